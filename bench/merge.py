"""Benchmark the merge stage (warp back to the plate, colour matching, matte, PNG writes)
on a run folder of ``facegraft run``.

    .venv/bin/python bench/merge.py RUN_FOLDER [--color meanstd]

Prints ``fps=<value>`` (plate frames / wall seconds of the whole stage, loading and the
plate's grain estimate included) last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from facegraft.common.merge_modes import COLOR_MODES
from facegraft.ml.merge import MergeOptions, merge


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run", type=Path, help="a 'facegraft run' folder")
    parser.add_argument("--color", choices=COLOR_MODES, default="meanstd")
    args = parser.parse_args()
    swaps = sorted((args.run / "plate").glob("swap_*"))
    if not swaps:
        raise SystemExit(f"{args.run}: no swap folder (run 'facegraft run' first)")
    started = time.perf_counter()
    folder = merge(args.run / "plate", swaps[0], MergeOptions(color=args.color),
                   progress_mode="none", force=True)
    wall = time.perf_counter() - started
    meta = json.loads((folder / "meta.json").read_text())
    print(f"run={args.run} color={args.color} frames={meta['frame_count']} "
          f"size={meta['width']}x{meta['height']}")
    print(f"wall={wall:.2f}s")
    print(f"fps={meta['frame_count'] / wall:.1f}")


if __name__ == "__main__":
    main()
