"""What the panel shows for each step of the shot, from the shot folder and the scene.

A step that is running or failed says so from the in-memory run state (``run_state.py``);
otherwise the files decide: no output is "Not Run", an output older than what it was
made from (or made from other footage) is "Stale", and the rest is "Done". The three
steps that act on the open scene (Build Scene, Transfer Geometry, Composite) look at the
scene. Nothing here raises: a damaged file shows as its step's problem, not as a panel
that fails to draw.
"""

from __future__ import annotations

import os
from pathlib import Path

import bpy

from ..common.outputs import output_is_complete
from ..common.shot_layout import SOURCE_IDENTITY_KEY
from ..common.stage_table import Step
from ..common.track_file import read_track_meta
from . import run_state
from .build import FACE_NAME, ROLE
from .composite_scene import GROUP_NODE

NOT_RUN, RUNNING, DONE, STALE, FAILED, DAMAGED = (
    "NOT_RUN", "RUNNING", "DONE", "STALE", "FAILED", "DAMAGED")
LABELS = {NOT_RUN: "Not Run", RUNNING: "Running", DONE: "Done", STALE: "Stale",
          FAILED: "Failed", DAMAGED: "Damaged: run it again"}

_meta_cache: dict[Path, tuple[int, dict | None]] = {}


def cached_track_meta(path: Path) -> dict | None:
    """A track's metadata, read once per version of the file; None when unreadable."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    cached = _meta_cache.get(path)
    if cached is None or cached[0] != mtime:
        cached = (mtime, read_track_meta(path))
        _meta_cache[path] = cached
    return cached[1]


_complete_cache: dict[tuple[Path, int], bool] = {}


def _complete(path: Path, mtime: int) -> bool:
    """output_is_complete, asked once per version of the output (panels redraw often)."""
    key = (path, mtime)
    if key not in _complete_cache:
        _complete_cache[key] = output_is_complete(path)
    return _complete_cache[key]


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def files_status(step: Step) -> str:
    """Done, Stale or Not Run from the step's outputs and what they were made from."""
    made = [_mtime(path) for path in step.outputs]
    if any(m is None for m in made):
        return NOT_RUN
    if not all(_complete(path, mtime) for path, mtime in zip(step.outputs, made, strict=True)):
        return DAMAGED
    needed = [m for m in (_mtime(path) for path in step.needs) if m is not None]
    if needed and max(needed) > min(made):
        return STALE
    if step.stage == "track":  # made from the footage set now?
        meta = cached_track_meta(step.outputs[0])
        footage = Path(step.argv[1])
        if meta is None:
            return NOT_RUN
        if Path(meta.get("video", "")) != footage.resolve():
            return STALE
        # Made with the tracking mask there is now, and after it? (A track step reads its
        # footage, then its tracking mask when there is one: stage_table._track_reads.)
        mask = step.reads[1] if len(step.reads) > 1 else None
        if meta.get("mask") != (str(mask.resolve()) if mask else None) or (
                mask and (_mtime(mask) or 0) > min(made)):
            return STALE
    return DONE


def scene_status(scene: bpy.types.Scene, step: Step) -> str | None:
    """The status of a step that acts on the open scene (None for the others)."""
    face = scene.objects.get(FACE_NAME)
    if step.name == "build plate":
        if face is None:
            return NOT_RUN
        meta = cached_track_meta(step.needs[0])
        built_from = scene.get("facegraft_track_sha256")
        return DONE if meta and built_from == meta.get("video_sha256") else STALE
    if step.name == "transfer":
        keys = face.data.shape_keys if face else None
        return DONE if keys and SOURCE_IDENTITY_KEY in keys.key_blocks else NOT_RUN
    if step.name == "composite":  # set up in this scene, then its frames as on disk
        tree = getattr(scene, "compositing_node_group", None) or getattr(scene, "node_tree",
                                                                          None)
        group = tree.nodes.get(GROUP_NODE) if tree is not None else None
        if group is None or group.node_tree is None or group.node_tree.get(ROLE) != "composite":
            return NOT_RUN
        return None
    return None


def step_inputs(step: Step) -> tuple:
    """What a failure of ``step`` is remembered with: its command line and the versions of
    the files it reads. When they change (the artist fixed the cause), "Failed" clears."""
    return (step.argv, tuple(_mtime(path) for path in (*step.needs, *step.reads)))


def step_status(scene: bpy.types.Scene, folder: Path, step: Step) -> str:
    run = run_state.get(folder, step.name)
    if run is not None and run.status == FAILED and run.inputs and \
            run.inputs != step_inputs(step):
        run_state.clear(folder, step.name)
        run = None
    if run is not None:
        return run.status
    try:
        status = scene_status(scene, step)
        return status if status is not None else files_status(step)
    except Exception:  # noqa: BLE001  (a panel must draw whatever is on disk)
        return FAILED
