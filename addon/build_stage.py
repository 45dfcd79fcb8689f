"""The Build Scene stage as one call, shared by the operator and both command lines."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import bpy

from ..common.errors import FaceGraftError
from ..common.samples import sha256_of
from ..common.track_file import TRACK_FILENAME, Track, load_track
from .scene_build import build_scene


def checked_inputs(shot: Path, plate: Path | None) -> tuple[Track, Path]:
    """Load the shot's track and make sure ``plate`` is the video it was made from.
    Nothing is touched before this has passed."""
    track = load_track(Path(shot) / TRACK_FILENAME)
    plate = Path(plate) if plate else Path(track.meta["video"])
    if not plate.exists():
        raise FaceGraftError(f"{plate}: plate not found")
    if plate.is_file() and sha256_of(plate) != track.meta.get("video_sha256"):
        raise FaceGraftError(
            f"{plate}: not the video {shot / TRACK_FILENAME} was tracked from; track it again"
        )
    return track, plate


def build_into_scene(scene: bpy.types.Scene, shot: Path, plate: Path | None = None):
    """Build Scene in an open Blender file (the operator)."""
    track, plate = checked_inputs(shot, plate)
    return build_scene(scene, track, Path(shot), plate)


def build_blend(shot: Path, blend: Path, plate: Path | None = None) -> Path:
    """Build Scene into a new .blend, written atomically (the command lines)."""
    shot, blend = Path(shot), Path(blend)
    track, plate = checked_inputs(shot, plate)
    if blend.suffix != ".blend":
        raise FaceGraftError(f"{blend}: the output must end in .blend")
    if not blend.parent.is_dir():
        raise FaceGraftError(f"{blend.parent}: folder does not exist")
    bpy.ops.wm.read_homefile(use_empty=True)  # keeps preferences and add-ons enabled
    scene = bpy.context.scene
    build_scene(scene, track, shot, plate)
    return save_blend_atomic(blend)


def save_blend_atomic(blend: Path) -> Path:
    """Save the open file as ``blend`` via a temporary file beside it, then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{blend.stem}.", suffix=".partial.blend", dir=blend.parent)
    os.close(fd)
    # Blender keeps a ".blend1" backup of a file it saves over: give it none to back up.
    os.unlink(tmp)
    try:
        # relative_remap makes the plate and point-cache paths relative to the .blend's
        # folder (the temporary file sits beside the final one, so they stay right).
        bpy.ops.wm.save_as_mainfile(filepath=tmp, relative_remap=True, compress=False)
        os.replace(tmp, blend)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return blend


def transfer_blend(source_shot: Path, blend: Path) -> Path:
    """Geometry transfer on a built .blend, saved back atomically (the command lines)."""
    from .transfer import transfer_into_scene

    blend = Path(blend)
    if not blend.is_file():
        raise FaceGraftError(f"{blend}: no such .blend (run 'facegraft build' first)")
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    transfer_into_scene(Path(source_shot))
    return save_blend_atomic(blend)
