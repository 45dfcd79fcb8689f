"""Benchmark the track stage end to end: decode, track, filter, write.

    .venv/bin/python bench/track.py VIDEO [--workers N] [--mask FOLDER]

``--mask``: a tracking mask (pipeline/track_mask.py), its pixels filled before detection.

Prints where the time goes, then ``fps=<value>`` (frames / wall seconds) as the last line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from facegraft.common.track_file import load_track
from facegraft.ml.tracking import track_video


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("video", type=Path)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--mask", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facegraft-bench-") as shot:
        started = time.perf_counter()
        path = track_video(args.video, Path(shot), workers=args.workers, progress_mode="none",
                           force=True, mask=args.mask)
        wall = time.perf_counter() - started
        track = load_track(path)
    timings = track.meta["timings_s"]
    frames = track.frame_count
    accounted = sum(timings.values())
    print(f"video={args.video} frames={frames} workers={track.meta['workers']} "
          f"mask={args.mask}")
    for name, seconds in timings.items():
        print(f"  {name:10s} {seconds:7.2f} s")
    print(f"  {'write+rest':10s} {wall - accounted:7.2f} s (probe, process start-up, write)")
    print(f"  detection alone: {frames / timings['detect_s']:.1f} fps")
    print(f"wall={wall:.2f}s")
    print(f"fps={frames / wall:.1f}")


if __name__ == "__main__":
    main()
