"""Benchmark training steps per second for each model profile.

    python bench/train.py [--profiles tiny,cpu,gpu,hq] [--device cpu|cuda] [--seconds 20]

Times the full training step of ``ml/train.py`` (input augmentation, both identities'
forward and backward passes with guides and neural textures, the masked SSIM + L1 +
mask loss, the Adam update; bf16 autocast and channels_last on CUDA) on synthetic
batches of the profile's shape: data loading from the memory-mapped datasets is a copy
and is left out. Prints one ``profile=<name> steps_per_s=<value>`` line per profile.
"""

from __future__ import annotations

import argparse
import time

import torch
from facegraft.ml.model import GUIDE_CHANNELS, PROFILES, SwapModel
from facegraft.ml.train import augment, reconstruction_loss


def synthetic_batch(size: int, count: int, device) -> dict[str, torch.Tensor]:
    region = torch.ones(count, size, size, dtype=torch.uint8)
    region[:, : size // 8] = 0
    guides = torch.rand(count, GUIDE_CHANNELS, size, size)
    return {"rgb": torch.rand(count, 3, size, size).to(device),
            "mask": (region > 0).float().unsqueeze(1).to(device),
            "region": region.to(device), "guides": guides.to(device)}


def bench_profile(name: str, device: torch.device, seconds: float, batch_size: int) -> float:
    config = PROFILES[name]
    model = SwapModel(config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    batches = [synthetic_batch(config.resolution, batch_size // 2, device) for _ in range(2)]
    generator = torch.Generator().manual_seed(0)

    def step():
        optimizer.zero_grad(set_to_none=True)
        for identity, batch in enumerate(batches):
            inputs = augment(batch["rgb"], generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                rgb, mask = model(inputs, batch["guides"], identity)
            loss, _ = reconstruction_loss(rgb.float(), mask.float(), batch, 3.0)
            loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or steps < 3:
        step()
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device={torch.cuda.get_device_name()}")
    for name in args.profiles.split(","):
        rate = bench_profile(name, device, args.seconds, args.batch_size)
        print(f"profile={name} resolution={PROFILES[name].resolution} batch={args.batch_size} "
              f"steps_per_s={rate:.3f}", flush=True)


if __name__ == "__main__":
    main()
