"""The Composite stage as one call (``facegraft composite`` through the bpy module, or
``blender -b -c facegraft composite``): set up the plate's built scene for compositing,
save it as the shot's .blend, and render its frames.

Frames are rendered one by one; each final PNG is written under a temporary name and
renamed once its EXR is on disk, so a killed render resumes at the first missing frame.
``<final>/render.json`` records what the frames were made from; a rerun with the same
inputs renders nothing. A .blend an artist has changed since FaceGraft wrote it is never
overwritten: its edits are rendered as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bpy

from ..common.atomic import atomic_path, write_bytes_atomic
from ..common.errors import FaceGraftError
from ..common.progress import Progress
from ..common.samples import sha256_of
from .build_stage import save_blend_atomic
from .composite import setup_composite

RENDER_STATE = "render.json"


def parse_scene_frames(text: str | None) -> tuple[int, int] | None:
    """``FIRST:LAST`` scene frames (both rendered), or None for the whole shot."""
    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise FaceGraftError(f"frames {text!r}: expected FIRST:LAST scene frames") from None
    return first, last


def final_name(scene_frame: int) -> str:
    return f"final_{scene_frame:06d}.png"


def exr_name(scene_frame: int) -> str:
    return f"facegraft_{scene_frame:06d}.exr"


def _read_state(final: Path) -> dict:
    try:
        return json.loads((final / RENDER_STATE).read_text())
    except (OSError, ValueError):
        return {}


def _prepare_blend(plate_blend: Path, merge_folder: Path, blend: Path, state: dict,
                   setup_key: str) -> str:
    """Open the shot's composite .blend: made afresh from the plate's built scene when it
    is missing or FaceGraft's own from other inputs, kept when an artist edited it.
    Returns which ("made", "kept" or "edited")."""
    if blend.exists():
        if not state.get("blend_sha256"):
            raise FaceGraftError(f"{blend}: exists and was not written by FaceGraft; move it "
                                 f"or write somewhere else")
        # Once edited, always the artist's: a later run renders it and never replaces it.
        edited = (sha256_of(blend) != state["blend_sha256"]
                  or state.get("blend_origin") == "edited")
        if edited or state.get("setup_key") == setup_key:
            bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
            return "edited" if edited else "kept"
    bpy.ops.wm.open_mainfile(filepath=str(plate_blend), load_ui=False)
    scene = bpy.context.scene
    setup_composite(scene, merge_folder.resolve(), blend.parent.resolve() / "exr")
    scene.render.filepath = "//final/final_######"
    save_blend_atomic(blend)
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)  # render what was saved
    return "made"


def _writes_exr(scene: bpy.types.Scene) -> bool:
    tree = getattr(scene, "compositing_node_group", None) or scene.node_tree
    node = tree.nodes.get("EXR Layers") if tree else None
    return node is not None and not node.mute


def composite(plate_blend: Path, merge_folder: Path, blend: Path,
              frames: tuple[int, int] | None = None, progress_mode: str = "bar") -> Path:
    """Render the composite of scene frames ``frames`` (first, last; default all) into
    ``<blend folder>/final`` and ``/exr``. Returns the final frames' folder."""
    plate_blend, merge_folder, blend = Path(plate_blend), Path(merge_folder), Path(blend)
    if blend.suffix != ".blend":
        raise FaceGraftError(f"{blend}: the output must end in .blend")
    final = blend.parent / "final"
    exr = blend.parent / "exr"
    state = _read_state(final)
    if not plate_blend.is_file():
        raise FaceGraftError(f"{plate_blend}: no built scene (run 'facegraft build')")
    try:
        merge_key = json.loads((merge_folder / "meta.json").read_text())["inputs_key"]
    except (OSError, ValueError, KeyError) as exc:
        raise FaceGraftError(f"{merge_folder}: no readable merge (run 'facegraft merge')"
                             ) from exc
    setup_key = hashlib.sha256(json.dumps([sha256_of(plate_blend), merge_key]).encode()
                               ).hexdigest()
    how = _prepare_blend(plate_blend, merge_folder, blend, state, setup_key)
    blend_sha = sha256_of(blend)
    scene = bpy.context.scene
    first, last = frames or (scene.frame_start, scene.frame_end)
    key = hashlib.sha256(json.dumps([blend_sha, merge_key]).encode()).hexdigest()
    # With the same inputs, a frame whose PNG is on disk is finished: the PNG is renamed
    # into place only after its EXR was written.
    same_inputs = state.get("key") == key
    todo = [f for f in range(first, last + 1)
            if not (same_inputs and (final / final_name(f)).is_file())]
    final.mkdir(exist_ok=True)
    exr.mkdir(exist_ok=True)
    for stale in final.glob(".final_*.partial.png"):  # a frame being saved when killed
        stale.unlink()
    progress = Progress("composite", max(len(todo), 1), progress_mode)
    write_bytes_atomic(final / RENDER_STATE, json.dumps({
        "key": key, "setup_key": setup_key if how != "edited" else state.get("setup_key"),
        "blend": blend.name, "blend_sha256": blend_sha, "blend_origin": how,
        "merge": str(merge_folder)}, indent=1).encode())
    writes_exr = _writes_exr(scene)
    for count, frame in enumerate(todo, 1):
        scene.frame_set(frame)
        bpy.ops.render.render(write_still=False)
        if writes_exr and not (exr / exr_name(frame)).is_file():
            raise FaceGraftError(f"{exr / exr_name(frame)}: the EXR was not written "
                                 f"(disk full or not writable?)")
        target = final / final_name(frame)
        try:
            with atomic_path(target) as tmp:
                bpy.data.images["Render Result"].save_render(str(tmp), scene=scene)
        except RuntimeError as exc:  # Blender's own write error
            raise FaceGraftError(f"{target}: could not write the frame ({exc})") from exc
        progress.update(count)
    progress.finish(output=str(final), frames=len(todo), blend=how)
    return final
