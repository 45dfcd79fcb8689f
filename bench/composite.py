"""Benchmark the composite stage (set up the scene, render every frame, write the EXR
layers and the final PNGs) on a shot made by ``facegraft run``.

    .venv/bin/python bench/composite.py SHOT [--profile cpu] [--frames FIRST:LAST]

Renders into a copy of the shot's composite outputs (the shot's own final/ and exr/ are
left alone) and prints ``fps=<value>`` (frames / wall seconds of the whole stage, Blender's
start and the scene set-up included) last.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facegraft.common.profiles import PROFILE_NAMES
from facegraft.common.shot_layout import ShotLayout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shot", type=Path, help="a shot folder made by 'facegraft run'")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="cpu")
    parser.add_argument("--frames", default=None, help="FIRST:LAST scene frames")
    args = parser.parse_args()
    layout = ShotLayout(args.shot.resolve())
    if not layout.merge(args.profile).is_dir():
        raise SystemExit(f"{layout.merge(args.profile)}: no merge (run 'facegraft run' first)")
    with tempfile.TemporaryDirectory(prefix="facegraft-bench-") as tmp:
        copy = ShotLayout(Path(tmp) / "shot")
        copy.root.mkdir()
        for role in ("plate", "source"):
            (copy.root / role).symlink_to(layout.footage(role).path)
        (copy.root / layout.merge(args.profile).name).symlink_to(layout.merge(args.profile))
        started = time.perf_counter()
        extra = ["--frames", args.frames] if args.frames else []
        subprocess.run([sys.executable, "-m", "facegraft", "composite", "--shot", str(copy.root),
                        "--profile", args.profile, "--progress", "none", *extra], check=True)
        wall = time.perf_counter() - started
        frames = len(list(copy.final.glob("final_*.png")))
        shutil.rmtree(copy.root)
    print(f"shot={args.shot} frames={frames}")
    print(f"wall={wall:.2f}s")
    print(f"fps={frames / wall:.2f}")


if __name__ == "__main__":
    main()
