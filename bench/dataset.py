"""Benchmark the dataset stage on a shot whose plate has its track and guides.

    .venv/bin/python bench/dataset.py SHOT [--size 256]

(``bench/guides.py VIDEO --shot SHOT`` prepares such a shot.) Prints ``fps=<value>``
(frames / wall seconds: decode, warp, write) last.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from facegraft.common.dataset_file import load_dataset
from facegraft.ml.dataset import make_dataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shot", type=Path)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    started = time.perf_counter()
    folder = make_dataset(args.shot, size=args.size, progress_mode="none", force=True)
    wall = time.perf_counter() - started
    frames = load_dataset(folder)["meta"]["frame_count"]
    print(f"shot={args.shot} size={args.size} frames={frames}")
    print(f"wall={wall:.2f}s")
    print(f"fps={frames / wall:.1f}")


if __name__ == "__main__":
    main()
