"""The run's deliverables from its rendered frames: ``final.mp4`` (preview movie),
``contact_sheet.png`` (plate, guides, swap, final side by side for a few frames) and
``metrics.json`` (identity, expression and jitter figures from ``eval``, how the final
frames compare with the plate inside and outside the matte, and per-stage timings)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.crop import for_opencv
from ..common.errors import FaceGraftError
from ..common.guides_file import load_guides
from ..common.profiles import PROFILE_RESOLUTION
from ..common.swap_file import load_swap, merge_dir, swap_dir
from ..common.track_file import TRACK_FILENAME, load_track
from .dataset import dataset_dir, load_dataset
from .video import probe_video, read_frames

DELIVERABLES = ("final.mp4", "contact_sheet.png", "metrics.json")
SHEET_ROWS = 4
SHEET_TILE = 192


def final_frame_path(out: Path, scene_frame: int) -> Path:
    return Path(out) / "final" / f"final_{scene_frame:06d}.png"


def read_final(out: Path, scene_frame: int) -> np.ndarray:
    path = final_frame_path(out, scene_frame)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceGraftError(f"{path}: missing or unreadable final frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_movie(out: Path, first_scene_frame: int, count: int, fps: float) -> Path:
    movie = Path(out) / "final.mp4"
    first = read_final(out, first_scene_frame)
    with atomic_path(movie) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                 (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise FaceGraftError(f"{movie}: OpenCV cannot write an MP4 here")
        try:
            for frame in range(first_scene_frame, first_scene_frame + count):
                writer.write(cv2.cvtColor(read_final(out, frame), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return movie


def _tile(image: np.ndarray) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(image), (SHEET_TILE, SHEET_TILE),
                      interpolation=cv2.INTER_AREA if image.shape[0] > SHEET_TILE
                      else cv2.INTER_CUBIC)


def write_contact_sheet(out: Path, plate: Path, swap_folder: Path) -> Path:
    """Rows of (plate, guides, swap, final) in the aligned crop of sampled frames."""
    swapped = load_swap(swap_folder)
    size = swapped["meta"]["resolution"]
    data = load_dataset(dataset_dir(plate, size))
    guides = load_guides(Path(plate) / swapped["meta"]["guides"])
    start = int(data["meta"]["start"])
    rows = np.flatnonzero(swapped["present"])
    picks = rows[np.linspace(0, len(rows) - 1, min(SHEET_ROWS, len(rows))).round().astype(int)]
    lines = []
    for row in picks:
        crop = np.asarray(guides.crops[row])
        final = read_final(out, start + row + 1)
        final_crop = cv2.warpAffine(final, for_opencv(crop), (size, size),
                                    flags=cv2.INTER_LINEAR)
        region = np.asarray(guides.region[row])
        normals = np.asarray(guides.normals[row]).copy()
        normals[region == 0] = 0
        lines.append(np.hstack([_tile(data["rgb"][row]), _tile(normals),
                                _tile(swapped["rgba"][row, ..., :3]), _tile(final_crop)]))
    header = np.full((28, SHEET_TILE * 4, 3), 255, np.uint8)
    for k, label in enumerate(("plate", "guides", "swap", "final")):
        cv2.putText(header, label, (k * SHEET_TILE + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header, *lines])
    path = Path(out) / "contact_sheet.png"
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise FaceGraftError(f"{path}: could not write")
    return path


def final_vs_plate(out: Path, plate: Path, merge_folder: Path) -> dict:
    """Mean absolute difference (0-255) of the final frames from the plate inside the matte
    (the face was replaced) and outside it (nothing may change but codec error)."""
    track = load_track(Path(plate) / TRACK_FILENAME)
    info = probe_video(Path(track.meta["video"]))
    start = int(track.meta["start"])
    inside, outside, outside_max = [], [], 0.0
    for index, frame in read_frames(info, start, start + track.frame_count):
        scene_frame = index + 1
        matte = cv2.imread(str(Path(merge_folder) / "matte" / f"matte_{scene_frame:06d}.png"),
                           cv2.IMREAD_GRAYSCALE)
        difference = np.abs(read_final(out, scene_frame).astype(np.int16) - frame).max(axis=2)
        if matte is None:
            raise FaceGraftError(f"{merge_folder}: matte of frame {scene_frame} missing")
        face = matte > 127
        clear = matte == 0
        if face.any():
            inside.append(float(difference[face].mean()))
        outside.append(float(difference[clear].mean()))
        outside_max = max(outside_max, float(np.percentile(difference[clear], 99.9)))
    return {"inside_matte_mean_abs": float(np.mean(inside)) if inside else None,
            "outside_matte_mean_abs": float(np.mean(outside)),
            "outside_matte_p99_9_abs": outside_max, "frames": len(outside)}


def deliver(out: Path, options, state: dict, timings: dict) -> Path:
    out = Path(out)
    plate = out / "plate"
    size = PROFILE_RESOLUTION[options.profile]
    swap_folder = swap_dir(plate, size, out / f"train_{options.profile}")
    merge_folder = merge_dir(swap_folder)
    merge_meta = json.loads((merge_folder / "meta.json").read_text())
    track = load_track(plate / TRACK_FILENAME)
    started = time.perf_counter()
    write_movie(out, int(merge_meta["first_scene_frame"]), track.frame_count,
                float(track.meta["fps"]))
    write_contact_sheet(out, plate, swap_folder)
    report = json.loads((out / "eval.json").read_text())["runs"]["swap"]
    checkpoint = json.loads((out / f"train_{options.profile}" / "checkpoint.json").read_text())
    stages = state.get("stages", {})
    frames = track.frame_count
    composite_s = stages.get("composite", {}).get("seconds")
    metrics = {
        "source": state.get("source"), "target": state.get("target"),
        "profile": options.profile, "frames": frames,
        "training": {"steps": checkpoint["step"],
                     "minutes": round(float(checkpoint.get("elapsed_s", 0)) / 60, 2)},
        "identity": {
            "distance_to_source": report.get("identity_distance_to_source"),
            "distance_to_target": report.get("identity_distance_to_target"),
            "note": report.get("identity_note",
                               "dlib face-recognition distance; same person below 0.6"),
        },
        "expression": {"landmark_nme": report.get("landmark_nme"),
                       "landmark_detected_fraction": report.get("landmark_detected_fraction")},
        "jitter": {"jitter_ratio": report.get("jitter_ratio"),
                   "note": "output landmark jitter over the plate's own; 1 = as steady"},
        "final_vs_plate": final_vs_plate(out, plate, merge_folder),
        "speed": {"merge_fps": merge_meta.get("fps"),
                  "composite_fps": round(frames / composite_s, 2) if composite_s else None},
        "timings_s": {name: record.get("seconds") for name, record in stages.items()},
        "this_run_s": timings,
        "deliver_s": round(time.perf_counter() - started, 2),
    }
    path = out / "metrics.json"
    write_bytes_atomic(path, json.dumps(metrics, indent=1).encode())
    return path
