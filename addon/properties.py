"""The shot as the artist sets it up, saved in the .blend: footage, shot folder, model
profile and the merge look. Run state is never stored here (``run_state.py`` keeps it in
memory), nor are executables: they come from preferences."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.merge_file import COLOR_MODES, MOUTH_MODES, OUTLINE_MODES, SHADING_MODES
from ..common.profiles import PROFILES
from ..common.stage_table import ShotSettings

COLOR_LABELS = {"none": "None", "mean": "Mean", "meanstd": "Mean and Deviation",
                "hist": "Histogram"}
# Enum items built here: Blender evaluates property annotations without this module's
# names in scope for comprehensions.
PROFILE_ITEMS = [(p.name, p.label, p.description) for p in PROFILES.values()]
COLOR_ITEMS = [(mode, COLOR_LABELS[mode], "") for mode in COLOR_MODES]
MOUTH_ITEMS = [(mode, mode.title(), f"the mouth interior from the {mode}")
               for mode in MOUTH_MODES]
SHADING_ITEMS = [("render", "CG Render", "the broad light of the source's texture rendered "
                  "under the plate's light"), ("none", "Network", "as the network made it")]
assert [item[0] for item in SHADING_ITEMS] == list(SHADING_MODES)
OUTLINE_ITEMS = [("plate", "Plate", "the plate's face outline: where the source's face is "
                  "wider, the plate's background stays"),
                 ("source", "Source", "the source's face outline, over the plate's background")]
assert [item[0] for item in OUTLINE_ITEMS] == list(OUTLINE_MODES)


# '//' paths: relative to the .blend. 4.5 and later ask for it (and warn without it);
# 4.2 has no such option and refuses to register a property that names it.
RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()


def _profile_changed(self, context) -> None:
    self.train_minutes = PROFILES[self.profile].default_minutes


class FaceGraftShot(bpy.types.PropertyGroup):
    plate: bpy.props.StringProperty(name="Plate", subtype="FILE_PATH", options=RELATIVE,
                                    description="Footage of the performer whose face is "
                                                "replaced: a movie or a folder of numbered images")
    source: bpy.props.StringProperty(name="Source", subtype="FILE_PATH", options=RELATIVE,
                                     description="Footage of the person whose face goes in")
    shot_folder: bpy.props.StringProperty(
        name="Shot Folder", subtype="DIR_PATH", options=RELATIVE,
        description="Where every stage writes its files (the same folder 'facegraft run "
                    "--shot' and farm jobs use)")
    profile: bpy.props.EnumProperty(
        name="Profile", default="cpu", update=_profile_changed,
        items=PROFILE_ITEMS)
    train_minutes: bpy.props.FloatProperty(
        name="Minutes", default=PROFILES["cpu"].default_minutes, min=0.1,
        description="Training time in all (Train continues until the model has trained "
                    "this long)")
    color: bpy.props.EnumProperty(
        name="Colour Match", default="meanstd",
        items=COLOR_ITEMS)
    mouth: bpy.props.EnumProperty(
        name="Mouth", default="swap",
        items=MOUTH_ITEMS)
    erode: bpy.props.FloatProperty(
        name="Erode", default=0.015, min=0.0, max=0.24, step=0.1, precision=3,
        description="Shrink the face's matte by this fraction of the face's width")
    feather: bpy.props.FloatProperty(
        name="Feather", default=0.03, min=0.0, max=0.24, step=0.1, precision=3,
        description="Soften the matte's edge over this fraction of the face's width")
    shading: bpy.props.EnumProperty(
        name="Shading", default="render", items=SHADING_ITEMS,
        description="The face's broad light from the CG render of the source's texture "
                    "under the plate's light, or as the network made it")
    detail: bpy.props.FloatProperty(
        name="Detail", default=1.0, min=0.0, max=4.0,
        description="How much of the source texture's fine detail to add at the plate's "
                    "resolution")
    outline: bpy.props.EnumProperty(
        name="Outline", default="plate", items=OUTLINE_ITEMS,
        description="Whose face outline bounds the swap: the plate's (its background never "
                    "shows the source's wider cheek) or the source's")
    use_frame_range: bpy.props.BoolProperty(
        name="Scene Frame Range Only", default=False,
        description="Work on the scene's frame range of the plate instead of all of it")
    source_start: bpy.props.IntProperty(
        name="Source From", default=0, min=0,
        description="The source's first frame to learn from")
    source_end: bpy.props.IntProperty(
        name="To", default=0, min=0,
        description="The source's frame after the last to learn from (0: to its end)")
    use_pick: bpy.props.BoolProperty(
        name="Follow the Picked Face", default=False,
        description="With several people in view: track the face picked in the Movie Clip "
                    "editor (Pick Face)")
    pick: bpy.props.IntVectorProperty(
        name="Picked Face", size=2, default=(0, 0), min=0,
        description="Pixel of the plate's first frame on the face to follow")


def absolute(path: str) -> Path | None:
    """A path property as an absolute path ('//' is the .blend's folder), or None."""
    return Path(bpy.path.abspath(path)) if path else None


def shot_settings(scene: bpy.types.Scene) -> ShotSettings | None:
    """The scene's shot as the stage table's settings; None until plate and source are set."""
    shot = scene.facegraft
    plate, source = absolute(shot.plate), absolute(shot.source)
    if plate is None or source is None:
        return None
    frames = f"{scene.frame_start - 1}:{scene.frame_end}" if shot.use_frame_range else None
    source_frames = None
    if shot.source_start or shot.source_end:
        source_frames = f"{shot.source_start}:{shot.source_end or ''}"
    return ShotSettings(plate=plate, source=source, profile=shot.profile,
                        minutes=shot.train_minutes, plate_frames=frames,
                        source_frames=source_frames,
                        pick=tuple(float(v) for v in shot.pick) if shot.use_pick else None,
                        color=shot.color, mouth=shot.mouth, erode=round(shot.erode, 4),
                        feather=round(shot.feather, 4), shading=shot.shading,
                        detail=round(shot.detail, 3), outline=shot.outline)


def shot_folder(scene: bpy.types.Scene) -> Path | None:
    return absolute(scene.facegraft.shot_folder)


classes = (FaceGraftShot,)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.facegraft = bpy.props.PointerProperty(type=FaceGraftShot)


def unregister() -> None:
    del bpy.types.Scene.facegraft
    _unregister_classes()
