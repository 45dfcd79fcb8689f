"""Time to quality: train a self-reenactment shot's model and judge every checkpoint as it
is written, printing the model's SSIM on the plate's frames against its training time.

The shot's source and plate are one person on different frames (``bench/quality.py``'s
self split: franck.mp4's frames 0-3999 and 4000-4799), so the plate's own crops are the
truth. Each checkpoint's source decoder renders the plate rows on the swap's guides and
textures (``ml/swap.py``'s ``model_faces``: the model alone, before the merge), and the
masked SSIM is the evaluation's ``ssim_model``. Training runs as ``facegraft train`` in
its own process on the same device; the time is the training's own clock (the
checkpoint's ``elapsed_s``), which the judging slows a little, never flatters.

    python bench/time_to_ssim.py SHOT --profile gpu --minutes 7 [--target 0.90]

The shot needs its datasets and textures at the profile's size and no model of that
profile yet (``bench/shot_pack.py unpack`` makes one on a machine without Blender). Prints
one JSON line per checkpoint, then ``time_to_ssim ...`` with the first checkpoint at or
above the target (or the best one when none is).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from facegraft.common.checkpoint_file import checkpoint_is_complete, read_sidecar
from facegraft.common.dataset_file import load_dataset
from facegraft.common.errors import FaceGraftError
from facegraft.common.profiles import get_profile
from facegraft.common.shot_layout import ShotLayout
from facegraft.ml.evaluate import masked_similarity
from facegraft.ml.swap import load_model, model_faces


def training_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "facegraft", "train", "--shot", str(args.shot),
            "--profile", args.profile, "--minutes", str(args.minutes),
            "--checkpoint-every", str(args.checkpoint_every), "--preview-every", "100000000",
            "--progress", "none",
            *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]


def judged_rows(layout: ShotLayout, size: int, every: int) -> tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]:
    """The plate rows judged (every ``every``-th with a face), their crops and masks."""
    data = load_dataset(layout.plate.dataset(size))
    rows = np.flatnonzero(np.asarray(data["present"]))[::every]
    return rows, np.asarray(data["rgb"][rows]), np.asarray(data["mask"][rows]) > 0


def judge(model_dir: Path, layout: ShotLayout, rows: np.ndarray, truth: np.ndarray,
          mask: np.ndarray, device: torch.device) -> dict | None:
    """The checkpoint's figures; None when it was being replaced while read."""
    try:
        model, sidecar = load_model(model_dir)
    except (FaceGraftError, OSError):
        return None
    with torch.no_grad():
        faces = model_faces(model.to(device), layout, rows)
    ssim, psnr, _ = masked_similarity(faces, truth, mask)
    return {"step": sidecar["step"], "train_s": round(float(sidecar["elapsed_s"]), 1),
            "ssim": round(ssim, 4), "psnr": round(psnr, 2)}


def saved_step(model_dir: Path) -> int | None:
    try:
        return int(read_sidecar(model_dir)["step"]) if checkpoint_is_complete(model_dir) else None
    except (FaceGraftError, OSError, KeyError, ValueError):
        return None


def follow(training: subprocess.Popen, model_dir: Path, layout: ShotLayout,
           judged: tuple, device: torch.device) -> list[dict]:
    """Judge each new checkpoint until training ends (and its last one is judged)."""
    results, seen = [], set()
    while True:
        finished = training.poll() is not None
        step = saved_step(model_dir)
        if step is not None and step not in seen:
            figures = judge(model_dir, layout, *judged, device)
            if figures is not None:
                seen.add(figures["step"])
                results.append(figures)
                print(json.dumps(figures), flush=True)
                continue
        if finished:
            return results
        time.sleep(1)


def summary(results: list[dict], args: argparse.Namespace, device: torch.device) -> str:
    where = f"profile={args.profile} device={device_name(device)} target={args.target}"
    reached = [r for r in results if r["ssim"] >= args.target]
    if reached:
        r = reached[0]
        return (f"time_to_ssim {where} seconds={r['train_s']} step={r['step']} "
                f"ssim={r['ssim']} final_ssim={results[-1]['ssim']}")
    best = max(results, key=lambda r: r["ssim"], default=None)
    return (f"time_to_ssim {where} not reached in {args.minutes} min"
            + (f" (best ssim={best['ssim']} at {best['train_s']} s, step {best['step']})"
               if best else ""))


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device).replace(" ", "_") if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shot", type=Path)
    parser.add_argument("--profile", default="gpu")
    parser.add_argument("--minutes", type=float, default=7.0)
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--judge-every", type=int, default=1, help="judge every n-th plate row")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    layout = ShotLayout(args.shot)
    model_dir = layout.model(get_profile(args.profile).name)
    if model_dir.exists():
        sys.exit(f"{model_dir}: a model is already there; time a fresh copy of the shot")
    judged = judged_rows(layout, get_profile(args.profile).resolution, args.judge_every)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(2)  # the training process needs the cores more
    with subprocess.Popen(training_command(args), stdout=subprocess.DEVNULL) as training:
        results = follow(training, model_dir, layout, judged, device)
    if training.returncode != 0:
        sys.exit(f"facegraft train failed (exit {training.returncode})")
    print(summary(results, args, device))


if __name__ == "__main__":
    main()
