"""What the ``occluded`` pair's swap loses to its track: the track of the plate with its
occluders against the track of the same frames without them, and the pair's shot swapped
again on the clean frames' track (the same model), judged as ``bench/quality.py`` judges it.

    .venv/bin/python bench/occluded_track.py [--out out/quality]

Run after ``bench/quality.py --pairs occluded`` (it reads ``OUT/occluded/full``). The copy
of the shot goes to ``OUT/occluded_clean_track/full``; the clean frames are tracked into
``OUT/footage/clean_plate``. Prints the track's error per frame and both shots' figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import Track, load_track, save_track
from quality import clean_plate_track, facegraft, figures, occluded_plate, track_error

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/quality"))
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
    for name, judged in (("own track", shot), ("clean frames' track", copy)):
        metrics = figures(judged, "occluded", args.out)
        print(name, json.dumps({key: metrics.get(key) for key in KEYS}))


if __name__ == "__main__":
    main()
