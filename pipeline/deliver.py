"""``facegraft deliver``: the shot's deliverables from its rendered frames: ``final.mp4``
(preview movie), ``contact_sheet.png`` (plate, guides, swap, final side by side for a few
frames) and ``metrics.json`` (identity, expression and jitter figures from ``eval``, how
the final frames compare with the plate inside and outside the matte, and per-step
timings from ``pipeline.json``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.crop import for_opencv
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.guides_file import load_guides
from ..common.merge_file import frame_path, load_merge_meta
from ..common.profiles import get_profile
from ..common.shot_layout import ShotLayout
from ..common.swap_file import load_swap
from ..common.texture_file import texture_key
from ..common.track_file import load_track
from .run_all import read_state
from .texture import load_texture, render_face
from .video import probe_video, read_frames

SHEET_ROWS = 4
SHEET_TILE = 192


def read_final(layout: ShotLayout, scene_frame: int) -> np.ndarray:
    path = layout.final_frame(scene_frame)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FaceGraftError(f"{path}: missing or unreadable final frame")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_movie(layout: ShotLayout, first_scene_frame: int, count: int, fps: float) -> Path:
    movie = layout.movie
    first = read_final(layout, first_scene_frame)
    with atomic_path(movie) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                 (first.shape[1], first.shape[0]))
        if not writer.isOpened():
            raise FaceGraftError(f"{movie}: OpenCV cannot write an MP4 here")
        try:
            for frame in range(first_scene_frame, first_scene_frame + count):
                writer.write(cv2.cvtColor(read_final(layout, frame), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
    return movie


def _tile(image: np.ndarray) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(image), (SHEET_TILE, SHEET_TILE),
                      interpolation=cv2.INTER_AREA if image.shape[0] > SHEET_TILE
                      else cv2.INTER_CUBIC)


def write_contact_sheet(layout: ShotLayout, swap_folder: Path) -> Path:
    """Rows of (plate, CG render, swap, final) in the aligned crop of sampled frames: the
    CG render is the source's texture on the source-shaped mesh under the plate's light
    (the mesh's normals where there is no texture)."""
    swapped = load_swap(swap_folder)
    size = swapped["meta"]["resolution"]
    data = load_dataset(layout.plate.dataset(size))
    guides = load_guides(layout.plate.path / swapped["meta"]["guides"])
    textures = [layout.footage(role).texture for role in ("source", "plate")]
    if all(texture_key(folder) for folder in textures):
        textures = [load_texture(folder) for folder in textures]
    else:
        textures = None
    start = int(data["meta"]["start"])
    rows = np.flatnonzero(swapped["present"])
    picks = rows[np.linspace(0, len(rows) - 1, min(SHEET_ROWS, len(rows))).round().astype(int)]
    lines = []
    for row in picks:
        crop = np.asarray(guides.crops[row])
        final = read_final(layout, start + row + 1)
        final_crop = cv2.warpAffine(final, for_opencv(crop), (size, size),
                                    flags=cv2.INTER_LINEAR)
        cg = _cg_tile(guides, row, textures)
        lines.append(np.hstack([_tile(data["rgb"][row]), _tile(cg),
                                _tile(swapped["rgba"][row, ..., :3]), _tile(final_crop)]))
    header = np.full((28, SHEET_TILE * 4, 3), 255, np.uint8)
    for k, label in enumerate(("plate", "source texture (CG)", "swap", "final")):
        cv2.putText(header, label, (k * SHEET_TILE + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    sheet = np.vstack([header, *lines])
    path = layout.contact_sheet
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise FaceGraftError(f"{path}: could not write")
    return path


def _cg_tile(guides, row: int, textures: list | None) -> np.ndarray:
    region = np.asarray(guides.region[row])
    if textures is None:
        normals = np.asarray(guides.normals[row]).copy()
        normals[region == 0] = 0
        return normals
    source, plate = textures
    return render_face(source, np.asarray(guides.uv[row]), np.asarray(guides.normals[row]),
                       region, plate.lighting[row])


def final_vs_plate(layout: ShotLayout, merge_folder: Path) -> dict:
    """Mean absolute difference (0-255) of the final frames from the plate inside the matte
    (the face was replaced) and outside it (nothing may change but codec error)."""
    track = load_track(layout.plate.track)
    info = probe_video(Path(track.meta["video"]))
    start = int(track.meta["start"])
    inside, outside, outside_max = [], [], 0.0
    for index, frame in read_frames(info, start, start + track.frame_count):
        scene_frame = index + 1
        matte = cv2.imread(str(frame_path(merge_folder, "matte", scene_frame)),
                           cv2.IMREAD_GRAYSCALE)
        difference = np.abs(read_final(layout, scene_frame).astype(np.int16) - frame).max(axis=2)
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


def deliver_shot(shot: Path, profile: str = "cpu") -> Path:
    """The movie, the contact sheet and metrics.json of the shot; returns metrics.json."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    merge_folder = layout.merge(name)
    merge_meta = load_merge_meta(merge_folder)
    track = load_track(layout.plate.track)
    started = time.perf_counter()
    write_movie(layout, int(merge_meta["first_scene_frame"]), track.frame_count,
                float(track.meta["fps"]))
    write_contact_sheet(layout, layout.swap(name))
    try:
        report = json.loads(layout.eval_report.read_text())["metrics"]
    except (OSError, ValueError, KeyError) as exc:
        raise FaceGraftError(f"{layout.eval_report}: no readable evaluation (run Evaluate)"
                             ) from exc
    checkpoint = json.loads(layout.checkpoint(name).read_text())
    steps = read_state(layout).get("steps", {})
    composite_s = steps.get("composite", {}).get("seconds")
    frames = track.frame_count
    metrics = {
        "source": str(layout.source.path), "plate": str(layout.plate.path),
        "profile": name, "frames": frames,
        "training": {"steps": checkpoint["step"],
                     "minutes": round(float(checkpoint.get("elapsed_s", 0)) / 60, 2)},
        "identity": {
            "distance_to_source": report.get("identity_distance_to_source"),
            "distance_to_target": report.get("identity_distance_to_target"),
            "recognised": report.get("recognised"),
            "closer_to_source": report.get("closer_to_source"),
            "note": report.get("identity_note",
                               "dlib face-recognition distance; same person below 0.6"),
        },
        "sharpness_ratio": report.get("sharpness_ratio"),
        "expression": {"landmark_nme": report.get("landmark_nme"),
                       "landmark_detected_fraction": report.get("landmark_detected_fraction")},
        "jitter": {"jitter_ratio": report.get("jitter_ratio"),
                   "note": "output landmark jitter over the plate's own; 1 = as steady"},
        "final_vs_plate": final_vs_plate(layout, merge_folder),
        "speed": {"merge_fps": merge_meta.get("fps"),
                  "composite_fps": round(frames / composite_s, 2) if composite_s else None},
        "timings_s": {step: record.get("seconds") for step, record in steps.items()},
        "deliver_s": round(time.perf_counter() - started, 2),
    }
    write_bytes_atomic(layout.metrics, json.dumps(metrics, indent=1).encode())
    return layout.metrics
