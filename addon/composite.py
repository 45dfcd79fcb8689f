"""The Composite stage (``facegraft composite``, ``blender -b -c facegraft composite``): the
shot's composite .blend (the plate's built scene with the composite set up in it, see
``composite_scene.py``) renders the final frames into ``SHOT/final/`` and the EXR layers
into ``SHOT/exr/``.

Rendering is Blender's own animation render over the frames asked for (a farm chunk, or
the whole shot), skipping frames already rendered from the same inputs: a killed render
resumes at the first missing frame. ``final/render.json`` records what the frames were
made from. When the inputs change, the earlier frames are moved aside before the first new
one is written and removed once the new render is complete: a shot never mixes two
renders. A frame cut short by a kill (a PNG without its end, an EXR that is not one) is
rendered again. A composite .blend an artist has changed since FaceGraft wrote it is never
overwritten: its edits are rendered as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import bpy

from ..common.atomic import write_bytes_atomic
from ..common.errors import FaceGraftError
from ..common.file_checks import blend_is_complete, exr_is_complete, png_is_complete
from ..common.merge_file import load_merge_meta
from ..common.profiles import get_profile
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from .blend_file import save_blend_atomic, save_copy_atomic
from .composite_scene import EXR_NODE, link_artist_objects, setup_composite


def _read_state(layout: ShotLayout) -> dict:
    """render.json; {} when there is none, {"damaged": True} when it cannot be read."""
    try:
        state = json.loads(layout.render_state.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"damaged": True}
    return state if isinstance(state, dict) else {"damaged": True}


def _prepare_blend(layout: ShotLayout, merge_folder: Path, state: dict,
                   setup_key: str) -> str:
    """Open the shot's composite .blend: made afresh from the plate's built scene when it
    is missing or FaceGraft's own from other inputs, kept when an artist edited it.
    Returns which ("made", "kept" or "edited")."""
    blend = layout.composite_blend
    if blend.exists() and not blend_is_complete(blend):  # cut short: kept aside, made again
        os.replace(blend, blend.with_name(blend.name + ".damaged"))
    if blend.exists():
        if not state.get("blend_sha256") and not state.get("damaged"):
            raise FaceGraftError(f"{blend}: exists and was not written by FaceGraft; move it "
                                 f"or use another shot folder")
        # Once edited, always the artist's: a later run renders it and never replaces it.
        # (Without a readable record of what FaceGraft wrote, it is taken for edited.)
        edited = (state.get("damaged") or sha256_of(blend) != state["blend_sha256"]
                  or state.get("blend_origin") == "edited")
        if edited or state.get("setup_key") == setup_key:
            bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
            return "edited" if edited else "kept"
    bpy.ops.wm.open_mainfile(filepath=str(layout.plate.scene), load_ui=False)
    scene = bpy.context.scene
    setup_composite(scene, merge_folder.resolve(), layout.exr, blend.parent)
    scene.render.filepath = "//final/final_######"
    save_blend_atomic(blend)
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)  # render what was saved
    return "made"


def adopt_open_scene(shot: Path) -> Path:
    """The panel's Composite: the open scene, set up for ``shot``'s .blend folder, saved as
    the shot's composite .blend. It is the artist's scene: the composite stage renders it
    as it is and never replaces it; a new save of it renders the frames again."""
    layout = ShotLayout(shot)
    state = _read_state(layout)
    save_copy_atomic(layout.composite_blend)
    state = {} if state.get("damaged") else state
    state.update(blend=layout.composite_blend.name, blend_origin="edited",
                 blend_sha256=sha256_of(layout.composite_blend))
    layout.final.mkdir(exist_ok=True)
    write_bytes_atomic(layout.render_state, json.dumps(state, indent=1).encode())
    return layout.composite_blend


def _writes_exr(scene: bpy.types.Scene) -> bool:
    from .blender_compat import compositor_tree

    tree = compositor_tree(scene, create=False)
    node = tree.nodes.get(EXR_NODE) if tree else None
    return node is not None and not node.mute and scene.render.use_compositing


def frame_is_complete(layout: ShotLayout, frame: int, with_exr: bool) -> bool:
    """A final PNG that ends properly (and its EXR layers, when the scene writes them)."""
    return png_is_complete(layout.final_frame(frame)) and (
        not with_exr or exr_is_complete(layout.exr_frame(frame)))


def _set_aside(layout: ShotLayout) -> list[Path]:
    """Move the frames of an earlier render out of the way (hidden beside them)."""
    moved = []
    for folder in (layout.final, layout.exr):
        if folder.is_dir():
            aside = folder.with_name(f".{folder.name}.replaced")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(folder, aside)
            moved.append(aside)
    return moved


def composite_shot(shot: Path, profile: str = "cpu", frames: tuple[int, int] | None = None,
                   prepare: bool = False, progress_mode: str = "bar") -> Path:
    """Render the composite of scene frames ``frames`` (first, last; default all) into the
    shot's final/ and exr/. Returns the final frames' folder. ``prepare``: only set up
    the .blend and the render record, so that a farm's chunks, started together, find
    them made and render side by side."""
    layout = ShotLayout(shot)
    merge_folder = layout.merge(get_profile(profile).name)
    state = _read_state(layout)
    if not blend_is_complete(layout.plate.scene):
        raise FaceGraftError(f"{layout.plate.scene}: no built scene, or a damaged one (run "
                             f"Build Scene)")
    merge_meta = load_merge_meta(merge_folder)
    merge_key = merge_meta.get("inputs_key")
    first_frame = int(merge_meta["first_scene_frame"])
    last_frame = first_frame + int(merge_meta["frame_count"]) - 1
    if frames and not first_frame <= frames[0] <= frames[1] <= last_frame:
        raise FaceGraftError(f"{layout.composite_blend}: frames {frames[0]}:{frames[1]} are "
                             f"outside the shot's {first_frame}:{last_frame}")
    setup_key = hashlib.sha256(json.dumps([sha256_of(layout.plate.scene), merge_key]).encode()
                               ).hexdigest()
    how = _prepare_blend(layout, merge_folder, state, setup_key)
    blend_sha = sha256_of(layout.composite_blend)
    scene = bpy.context.scene
    scene_frames = (scene.frame_start, scene.frame_end)
    first, last = frames or scene_frames
    key = hashlib.sha256(json.dumps([blend_sha, merge_key]).encode()).hexdigest()
    replaced = _set_aside(layout) if state and state.get("key") != key else []
    layout.final.mkdir(exist_ok=True)
    layout.exr.mkdir(exist_ok=True)
    write_bytes_atomic(layout.render_state, json.dumps({
        "key": key, "setup_key": setup_key if how != "edited" else state.get("setup_key"),
        "blend": layout.composite_blend.name, "blend_sha256": blend_sha, "blend_origin": how,
        "merge": str(merge_folder), "scene_frames": scene_frames, "exr": _writes_exr(scene)},
        indent=1).encode())
    rendered = 0 if prepare else _render_range(scene, layout, first, last, progress_mode)
    for aside in replaced:
        shutil.rmtree(aside, ignore_errors=True)
    for leftover in layout.root.glob(".*.replaced"):  # from a render killed earlier
        shutil.rmtree(leftover, ignore_errors=True)
    Progress("composite", 1, progress_mode).finish(output=str(layout.final), frames=rendered,
                                                   blend=how)
    return layout.final


def _render_range(scene: bpy.types.Scene, layout: ShotLayout, first: int, last: int,
                  progress_mode: str) -> int:
    """Render the frames of first..last that are not complete yet, with Blender's animation
    render (it keeps the scene loaded between frames); returns how many it rendered."""
    with_exr = _writes_exr(scene)
    todo = [f for f in range(first, last + 1) if not frame_is_complete(layout, f, with_exr)]
    for frame in todo:  # what a kill cut short goes, so the render writes it again
        layout.final_frame(frame).unlink(missing_ok=True)
        layout.exr_frame(frame).unlink(missing_ok=True)
    if not todo:
        return 0
    progress = Progress("composite", len(todo), progress_mode)
    written = []

    def count(_scene, *_args) -> None:
        written.append(1)
        progress.update(len(written))

    link_artist_objects(scene)  # objects added since the set-up cut the face too
    # The shot's final frames are 8-bit PNGs in final/ whatever the scene's own output
    # (an artist's scene keeps its settings in the .blend: this render does not save).
    scene.render.filepath = str(layout.final / "final_######")
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # 5.0: the media type comes first
        settings.media_type = "IMAGE"
    settings.file_format, settings.color_mode, settings.color_depth = "PNG", "RGB", "8"
    scene.render.use_overwrite = False  # frames on disk are complete: they are skipped
    scene.render.use_placeholder = False
    scene.frame_start, scene.frame_end = todo[0], todo[-1]
    bpy.app.handlers.render_write.append(count)
    try:
        bpy.ops.render.render(animation=True)
    finally:
        bpy.app.handlers.render_write.remove(count)
    missing = [f for f in todo if not frame_is_complete(layout, f, with_exr)]
    if missing:
        raise FaceGraftError(f"{layout.final_frame(missing[0])}: the frame was not written "
                             f"(disk full or not writable?)")
    return len(todo)
