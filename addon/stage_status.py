"""What the panel shows for each stage, derived from the shot folder and the scene.

A stage that is running or failed says so from its run state; otherwise the files decide:
no output is "Not Run", an output made from other inputs than the current ones is
"Stale", and the rest is "Done". Track metadata is read once per file version.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.track_file import TRACK_FILENAME, read_track_meta
from .scene_build import FACE_NAME

_meta_cache: dict[Path, tuple[int, dict | None]] = {}


def cached_track_meta(shot: Path) -> dict | None:
    path = shot / TRACK_FILENAME
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _meta_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, read_track_meta(path))
        _meta_cache[path] = cached
    return cached[1]


def stage_status(scene: bpy.types.Scene, stage: str) -> str:
    shot = scene.facegraft
    state = getattr(shot, stage)
    if state.status in {"RUNNING", "FAILED"}:
        return state.status
    if not shot.shot_folder:
        return "NOT_RUN"
    meta = cached_track_meta(Path(bpy.path.abspath(shot.shot_folder)))
    if stage == "track":
        if meta is None:
            return "NOT_RUN"
        plate = Path(bpy.path.abspath(shot.plate)) if shot.plate else None
        return "DONE" if plate is None or Path(meta.get("video", "")) == plate else "STALE"
    if stage == "build":
        if FACE_NAME not in scene.objects:
            return "NOT_RUN"
        built_from = scene.get("facegraft_track_sha256")
        return "DONE" if meta and built_from == meta.get("video_sha256") else "STALE"
    return state.status
