"""What the ``occluded`` pair's swap loses to its track: the track of the plate with its
occluders against the track of the same frames without them; the pair's shot swapped
again on the clean frames' track (the same model); and the shot tracked around its own
occlusion matte as an artist would (``facegraft track-mask``, then ``facegraft run``:
tracked, trained and swapped again), each judged as ``bench/quality.py`` judges it.

    .venv/bin/python bench/occluded_track.py [--out out/quality] [--skip-mask-run]

Run after ``bench/quality.py --pairs occluded`` (it reads ``OUT/occluded/full``). The
copies of the shot go to ``OUT/occluded_clean_track/full`` and
``OUT/occluded_track_mask/full``; the clean frames are tracked into
``OUT/footage/clean_plate``. Prints the track's error per frame and the shots' figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import Track, load_track, save_track
from quality import (
    clean_plate_track,
    facegraft,
    figures,
    occluded_plate,
    sample_path,
    track_error,
)

KEYS = ("recognised", "identity_distance_to_source", "landmark_nme", "occlusion_iou",
        "occluder_change", "track_error")


def swapped_on_track(shot: Path, track: Track, copy: Path) -> None:
    """``shot``'s plate given ``track``'s landmarks, pose and shape (its own video and meta
    kept), built, swapped, merged, composited and judged again in ``copy``."""
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    layout = ShotLayout(shot)
    (copy / "source").symlink_to(layout.source.path.resolve())  # read, never written
    shutil.copytree(layout.plate.path, copy / "plate")
    shutil.copytree(layout.model("cpu"), ShotLayout(copy).model("cpu"))
    own = load_track(layout.plate.track)
    save_track(dataclasses.replace(track, meta=own.meta), ShotLayout(copy).plate.track)
    facegraft("build", "--shot", copy, "--role", "plate")
    facegraft("transfer", "--shot", copy)
    for stage in ("guides", "dataset", "texture"):
        facegraft(stage, "--shot", copy, "--role", "plate", "--size", 128, "--force",
                  "--progress", "none")
    for stage in ("swap", "merge", "composite"):
        facegraft(stage, "--shot", copy, "--profile", "cpu", "--progress", "none")
    facegraft("eval", "--shot", copy, "--profile", "cpu")


def rerun_with_track_mask(shot: Path, copy: Path, out: Path, steps: int) -> None:
    """What an artist does about a bent track: a copy of ``shot`` given its occlusion matte
    as the plate's tracking mask (``facegraft track-mask``) and run again (``facegraft
    run``: the plate tracked around the occluders, its data made again, the model trained
    again on it, swapped, merged and judged)."""
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(shot, copy, symlinks=True)
    facegraft("track-mask", "--shot", copy, "--profile", "cpu")
    facegraft("run", "--source", sample_path("franck.mp4"), "--plate", occluded_plate(out)[0],
              "--shot", copy, "--profile", "cpu", "--steps", steps, "--progress", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/quality"))
    parser.add_argument("--steps", type=int, default=1500,
                        help="training steps of the tracking mask's run (the pair's own)")
    parser.add_argument("--skip-mask-run", action="store_true",
                        help="only the clean frames' track (the masked run trains again)")
    args = parser.parse_args()
    shot = args.out / "occluded" / "full"
    if not ShotLayout(shot).eval_report.is_file():
        raise SystemExit(f"{shot}: no judged shot (run bench/quality.py --pairs occluded)")
    clean = clean_plate_track(args.out)
    truth = np.load(occluded_plate(args.out)[1])["masks"] > 127
    error = track_error(load_track(ShotLayout(shot).plate.track), clean)
    occluded = truth[:len(error)].any(axis=(1, 2))
    print("track error per frame (x100): " + " ".join(
        f"{row}:{100 * e:.1f}{'*' if occluded[row] else ''}" for row, e in enumerate(error)))
    print(f"track error: mean {np.nanmean(error):.4f}, frames with occluders "
          f"{np.nanmean(error[occluded]):.4f}, without {np.nanmean(error[~occluded]):.4f}")
    copy = args.out / "occluded_clean_track" / "full"
    swapped_on_track(shot, clean, copy)
    judged_shots = [("own track", shot), ("clean frames' track", copy)]
    if not args.skip_mask_run:
        masked = args.out / "occluded_track_mask" / "full"
        clock = time.perf_counter()
        rerun_with_track_mask(shot, masked, args.out, args.steps)
        print(f"tracked around the occlusion matte and run again in "
              f"{time.perf_counter() - clock:.0f} s")
        judged_shots.append(("tracked around its occlusion matte", masked))
    for name, judged in judged_shots:
        metrics = figures(judged, "occluded", args.out)
        print(name, json.dumps({key: metrics.get(key) for key in KEYS}))


if __name__ == "__main__":
    main()
