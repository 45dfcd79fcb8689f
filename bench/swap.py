"""Benchmark swap (inference) frames per second for each model profile.

    python bench/swap.py [--profiles tiny,cpu,gpu,hq] [--device cpu|cuda] [--seconds 10]

Times the swap network's forward pass (encoder, source decoder with guides and neural
texture, bf16 autocast on CUDA) on synthetic batches of the profile's shape. Prints one
``profile=<name> fps=<value>`` line per profile.
"""

from __future__ import annotations

import argparse
import time

import torch
from facegraft.ml.model import GUIDE_CHANNELS, PROFILES, SwapModel


def bench_profile(name: str, device: torch.device, seconds: float, batch_size: int) -> float:
    config = PROFILES[name]
    model = SwapModel(config).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    size = config.resolution
    image = torch.rand(batch_size, 3, size, size, device=device)
    guides = torch.rand(batch_size, GUIDE_CHANNELS, size, size, device=device)
    frames, started = 0, None
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=device.type == "cuda"):
        for i in range(1_000_000):
            if i == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
            model(image, guides, 0)
            if started is not None:
                frames += batch_size
                if time.perf_counter() - started > seconds and frames >= 3 * batch_size:
                    break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", default=",".join(PROFILES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        print(f"device={torch.cuda.get_device_name()}")
    for name in args.profiles.split(","):
        rate = bench_profile(name, device, args.seconds, args.batch_size)
        print(f"profile={name} resolution={PROFILES[name].resolution} fps={rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
