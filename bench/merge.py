"""Benchmark the merge stage (warp back to the plate, colour matching, matte, PNG writes)
on a shot folder made by ``facegraft run``.

    .venv/bin/python bench/merge.py SHOT [--color meanstd] [--profile cpu]

Prints ``fps=<value>`` (plate frames / wall seconds of the whole stage, loading and the
plate's grain estimate included) last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from facegraft.common.merge_file import COLOR_MODES
from facegraft.common.profiles import PROFILE_NAMES
from facegraft.common.shot_layout import ShotLayout
from facegraft.pipeline.merge import MergeOptions, merge


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("shot", type=Path, help="a shot folder made by 'facegraft run'")
    parser.add_argument("--color", choices=COLOR_MODES, default="meanstd")
    parser.add_argument("--profile", choices=PROFILE_NAMES, default="cpu")
    args = parser.parse_args()
    layout = ShotLayout(args.shot)
    if not layout.swap(args.profile).is_dir():
        raise SystemExit(f"{layout.swap(args.profile)}: no swap (run 'facegraft run' first)")
    started = time.perf_counter()
    folder = merge(layout, layout.swap(args.profile), layout.merge(args.profile),
                   MergeOptions(color=args.color), progress_mode="none", force=True)
    wall = time.perf_counter() - started
    meta = json.loads((folder / "meta.json").read_text())
    print(f"shot={args.shot} color={args.color} frames={meta['frame_count']} "
          f"size={meta['width']}x{meta['height']}")
    print(f"wall={wall:.2f}s")
    print(f"fps={meta['frame_count'] / wall:.1f}")


if __name__ == "__main__":
    main()
