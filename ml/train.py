"""``facegraft train``: fit the swap model to a source and a target shot.

Each step draws half a batch from each identity's dataset (memory-mapped; no video is
decoded), warps and colour-jitters the encoder's input (the target stays put: it must
line up with the guides), and reconstructs each identity with its own decoder. The loss
is, inside the face mask, L1 plus 1 - SSIM with the eyes, lips and mouth weighted
higher, plus a binary cross-entropy for the predicted mask.

Everything random in a step is drawn from a generator seeded by (seed, step), so a run
resumed from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..common.atomic import atomic_path
from ..common.errors import FaceGraftError
from ..common.guides_file import REGION_LABELS
from ..common.progress import Progress
from .checkpoint import SIDECAR, load_checkpoint, read_sidecar, restore, save_checkpoint
from .dataset import dataset_dir, load_dataset
from .model import SwapConfig, SwapModel, guides_tensor, profile

SOURCE, TARGET = 0, 1
HEAVY_REGIONS = (REGION_LABELS["eyes"], REGION_LABELS["lips"], REGION_LABELS["mouth_interior"])


@dataclass
class TrainOptions:
    profile: str = "cpu"
    batch_size: int = 8
    learning_rate: float = 2e-4
    steps: int | None = None
    minutes: float | None = None
    checkpoint_every: int = 200
    preview_every: int = 200
    seed: int = 1
    source_frames: str | None = None  # "FIRST:END" rows of the source dataset
    target_frames: str | None = None
    region_weight: float = 3.0  # eyes, lips and mouth count this much more


def parse_rows(text: str | None, count: int) -> np.ndarray:
    if not text:
        return np.arange(count)
    first, end = (int(v) if v else d for v, d in zip(text.split(":"), (0, count), strict=True))
    if not 0 <= first < end <= count:
        raise FaceGraftError(f"frame range {text} is outside 0:{count}")
    return np.arange(first, end)


class ShotData:
    """One identity's training frames, memory-mapped."""

    def __init__(self, shot: Path, resolution: int, rows: str | None, use_guides: bool):
        folder = dataset_dir(shot, resolution)
        if not folder.is_dir():
            others = sorted(p.name for p in Path(shot).glob("dataset_*"))
            raise FaceGraftError(
                f"{folder}: no dataset at the model's resolution {resolution}"
                + (f" (found {', '.join(others)})" if others else "")
                + f"; run 'facegraft guides --size {resolution}' and "
                  f"'facegraft dataset --size {resolution}'"
            )
        self.data = load_dataset(folder)
        chosen = parse_rows(rows, self.data["meta"]["frame_count"])
        self.rows = chosen[np.asarray(self.data["present"])[chosen]]
        if len(self.rows) == 0:
            raise FaceGraftError(f"{folder}: no frame with a face in the chosen range")
        self.use_guides = use_guides

    def batch(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        rows = np.sort(rows)
        d = self.data
        out = {
            "rgb": torch.from_numpy(np.asarray(d["rgb"][rows])).permute(0, 3, 1, 2).float() / 255,
            "mask": torch.from_numpy(np.asarray(d["mask"][rows])).float().unsqueeze(1) / 255,
            "region": torch.from_numpy(np.asarray(d["region"][rows])),
        }
        out["guides"] = guides_tensor(torch.from_numpy(np.asarray(d["normals"][rows])),
                                      torch.from_numpy(np.asarray(d["uv"][rows])), out["region"])
        return out


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small similarity warps and colour changes of the encoder's input. The
    random numbers come from the (CPU) generator; the work runs where the images are."""
    n = len(images)
    u = torch.rand(n, 6, generator=generator) * 2 - 1
    jitter = torch.rand(n, 3, 1, 1, generator=generator) * 0.1
    angle = u[:, 0] * math.radians(5)
    scale = 1 + u[:, 1] * 0.05
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale * torch.cos(angle)
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle)
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = u[:, 2:4] * 0.05
    theta, u, jitter = theta.to(images.device), u.to(images.device), jitter.to(images.device)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                           align_corners=False)
    gain = 1 + u[:, 4:5, None, None] * 0.15 + jitter
    offset = u[:, 5:6, None, None] * 0.05
    return (warped * gain + offset).clamp(0, 1)


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return (g / g.sum())


def ssim_map(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Per-pixel SSIM of images in 0..1, averaged over channels: (B, 1, H, W)."""
    g = _gaussian(window, 1.5).to(a)
    kernel = (g[:, None] * g[None, :]).expand(a.shape[1], 1, window, window)
    blur = lambda x: F.conv2d(x, kernel, padding=window // 2, groups=a.shape[1])  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    numerator = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    denominator = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return (numerator / denominator).mean(dim=1, keepdim=True)


def reconstruction_loss(rgb, mask_logits, batch, region_weight: float):
    mask = batch["mask"]
    heavy = torch.zeros_like(mask)
    for label in HEAVY_REGIONS:
        heavy = heavy + (batch["region"] == label).unsqueeze(1).float()
    weight = mask * (1 + (region_weight - 1) * heavy)
    total = weight.sum().clamp(min=1)
    l1 = ((rgb - batch["rgb"]).abs().mean(dim=1, keepdim=True) * weight).sum() / total
    ssim = 1 - (ssim_map(rgb, batch["rgb"]) * weight).sum() / total
    mask_loss = F.binary_cross_entropy_with_logits(mask_logits, mask)
    return l1 + ssim + 0.5 * mask_loss, {"l1": l1.item(), "ssim": ssim.item(),
                                          "mask": mask_loss.item()}


def _write_preview(path: Path, model: SwapModel, source: dict, target: dict, use_guides: bool):
    """Rows: source in/out, target in/out, target frame rendered as the source."""
    device = next(model.parameters()).device
    source = {k: v.to(device) for k, v in source.items()}
    target = {k: v.to(device) for k, v in target.items()}
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=device.type == "cuda"):
        n = min(4, len(source["rgb"]), len(target["rgb"]))
        rec_s, _ = model(source["rgb"][:n], source["guides"][:n] if use_guides else None, SOURCE)
        rec_t, _ = model(target["rgb"][:n], target["guides"][:n] if use_guides else None, TARGET)
        swap, mask = model(target["rgb"][:n], target["guides"][:n] if use_guides else None, SOURCE)
        alpha = torch.sigmoid(mask)
        composite = swap * alpha + target["rgb"][:n] * (1 - alpha)
    columns = [source["rgb"][:n], rec_s, target["rgb"][:n], rec_t, composite]
    grid = torch.cat([torch.cat(list(c.float().cpu()), dim=1) for c in columns], dim=2)
    image = (grid.permute(1, 2, 0).float().numpy() * 255).clip(0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), image[..., ::-1])


def train(source_shot: Path, target_shot: Path, run: Path, options: TrainOptions,
          resume: bool = False, progress_mode: str = "bar", use_guides: bool = True) -> Path:
    run = Path(run)
    if options.steps is None and options.minutes is None:
        raise FaceGraftError("say how long to train: --steps S or --minutes M")
    if run.exists() and (run / SIDECAR).exists() and not resume:
        raise FaceGraftError(f"{run}: already holds a run; use --resume or another folder")
    run.mkdir(parents=True, exist_ok=True)
    config = profile(options.profile, use_guides=use_guides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    step, elapsed_before = 0, 0.0
    if resume and (run / SIDECAR).exists():
        sidecar = read_sidecar(run)
        config = SwapConfig.from_dict(sidecar["config"])
    torch.manual_seed(options.seed)  # the initial weights; each step seeds its own draws
    model = SwapModel(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=options.learning_rate, betas=(0.5, 0.999))
    if resume and (run / SIDECAR).exists():
        sidecar, tensors = load_checkpoint(run)
        restore(model, optimizer, sidecar, tensors)
        step, elapsed_before = int(sidecar["step"]), float(sidecar.get("elapsed_s", 0.0))
    source = ShotData(source_shot, config.resolution, options.source_frames, config.use_guides)
    target = ShotData(target_shot, config.resolution, options.target_frames, config.use_guides)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        for state in optimizer.state.values():
            for key, value in state.items():
                if torch.is_tensor(value):
                    state[key] = value.to(device)
    record = {"source": str(source_shot), "target": str(target_shot), **asdict(options),
              "config": config.to_dict(), "device": str(device),
              "source_rows": int(len(source.rows)), "target_rows": int(len(target.rows))}
    (run / "config.json").write_text(json.dumps(record, indent=1))
    (run / "previews").mkdir(exist_ok=True)

    total_steps = options.steps
    deadline = None if options.minutes is None else options.minutes * 60
    progress = Progress("train", total_steps or int(deadline), progress_mode)
    started = time.perf_counter()
    half = max(1, options.batch_size // 2)
    log = open(run / "loss.jsonl", "a")
    last_saved = step
    batches = None
    try:
        while True:
            elapsed = time.perf_counter() - started
            if total_steps is not None and step >= total_steps:
                break
            if deadline is not None and elapsed_before + elapsed >= deadline:
                break
            generator = torch.Generator().manual_seed(options.seed * 1_000_003 + step)
            batches = tuple(
                data.batch(data.rows[torch.randint(len(data.rows), (half,),
                                                   generator=generator).numpy()])
                for data in (source, target))
            optimizer.zero_grad(set_to_none=True)
            parts = {}
            loss_total = 0.0
            for identity, batch in zip((SOURCE, TARGET), batches, strict=True):
                batch = {k: v.to(device) for k, v in batch.items()}
                inputs = augment(batch["rgb"], generator)
                guides = batch["guides"] if config.use_guides else None
                if device.type == "cuda":
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16,
                                    enabled=device.type == "cuda"):
                    rgb, mask_logits = model(inputs, guides, identity)
                loss, values = reconstruction_loss(rgb.float(), mask_logits.float(), batch,
                                                   options.region_weight)
                loss.backward()
                loss_total += loss.item()
                parts.update({f"{k}_{'source' if identity == SOURCE else 'target'}": v
                              for k, v in values.items()})
            optimizer.step()
            step += 1
            elapsed = time.perf_counter() - started
            log.write(json.dumps({"step": step, "loss": loss_total / 2, **parts,
                                  "seconds": round(elapsed_before + elapsed, 2)}) + "\n")
            log.flush()
            progress.update(step if total_steps else int(elapsed_before + elapsed))
            if step % options.preview_every == 0:
                _write_preview(run / "previews" / f"step_{step:08d}.png", model, batches[0],
                               batches[1], config.use_guides)
                _write_preview(run / "preview_latest.png", model, batches[0], batches[1],
                               config.use_guides)
            if step % options.checkpoint_every == 0:
                save_checkpoint(run, step, model, optimizer, config.to_dict(), asdict(options),
                                elapsed_before + elapsed)
                last_saved = step
        if step != last_saved:
            save_checkpoint(run, step, model, optimizer, config.to_dict(), asdict(options),
                            elapsed_before + time.perf_counter() - started)
        if batches is not None:
            _write_preview(run / "preview_latest.png", model, batches[0], batches[1],
                           config.use_guides)
    finally:
        log.close()
    progress.finish(output=str(run), steps=step)
    return run
