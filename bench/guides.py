"""Benchmark the guides stage on a video (as a shot's plate): track and build first (not
timed), then guides.

    .venv/bin/python bench/guides.py VIDEO [--size 256] [--workers N] [--shot DIR]

Prints ``fps=<value>`` (frames rendered / wall seconds of the guides stage) last.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from facegraft.common.guides_file import load_guides
from facegraft.ml.tracking import track_video
from facegraft.pipeline.guides import make_guides


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video", type=Path)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--shot", type=Path, default=None,
                        help="shot folder to use and keep (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facegraft-bench-") as tmp:
        shot = args.shot or Path(tmp)
        track_video(args.video, shot, progress_mode="none")
        subprocess.run([sys.executable, "-m", "facegraft", "build", "--shot", str(shot)],
                       check=True, capture_output=True)
        started = time.perf_counter()
        folder = make_guides(shot, size=args.size, workers=args.workers,
                             progress_mode="none", force=True)
        wall = time.perf_counter() - started
        meta = load_guides(folder).meta
    frames = meta["frame_count"]
    workers = args.workers or "default"
    print(f"video={args.video} size={args.size} workers={workers} frames={frames}")
    print(f"wall={wall:.2f}s")
    print(f"fps={frames / wall:.1f}")


if __name__ == "__main__":
    main()
