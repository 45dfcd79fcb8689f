"""What the panel shows for each stage, derived from the shot folder and the scene.

A stage that is running or failed says so from its run state; otherwise the files decide:
no output is "Not Run", an output made from other inputs than the current ones is
"Stale", and the rest is "Done". Track metadata is read once per file version.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.guides_file import guides_dir
from ..common.profiles import PROFILE_RESOLUTION
from ..common.track_file import TRACK_FILENAME, read_track_meta
from .scene_build import FACE_NAME, ROLE
from .transfer import SHAPE_KEY

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
    if stage == "source_track":
        if not shot.source:
            return "NOT_RUN"
        source = Path(bpy.path.abspath(shot.source))
        meta = cached_track_meta(source.with_name(source.stem + ".facegraft"))
        if meta is None:
            return "NOT_RUN"
        return "DONE" if Path(meta.get("video", "")) == source else "STALE"
    if stage == "transfer":
        face = scene.objects.get(FACE_NAME)
        keys = face.data.shape_keys if face else None
        return "DONE" if keys and SHAPE_KEY in keys.key_blocks else "NOT_RUN"
    if not shot.shot_folder:
        return "NOT_RUN"
    folder = Path(bpy.path.abspath(shot.shot_folder))
    size = PROFILE_RESOLUTION[shot.profile]
    done = {
        "guides": guides_dir(folder, size) / "meta.json",
        "dataset": folder / f"dataset_{size}" / "meta.json",
        "train": folder / f"run_{shot.profile}" / "checkpoint.json",
        "swap": folder / f"swap_{size}_run_{shot.profile}" / "meta.json",
        "merge": folder / f"merge_{size}_run_{shot.profile}" / "meta.json",
        "run_all": folder / "run_all" / "metrics.json",
    }
    if stage == "composite":
        tree = getattr(scene, "compositing_node_group", None)
        return "DONE" if tree is not None and tree.get(ROLE) == "composite" else "NOT_RUN"
    if stage == "source_prepare" and shot.source:
        source = Path(bpy.path.abspath(shot.source))
        done[stage] = source.with_name(source.stem + ".facegraft") / f"dataset_{size}" / "meta.json"
    if stage in done:
        return "DONE" if done[stage].is_file() else "NOT_RUN"
    meta = cached_track_meta(folder)
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
