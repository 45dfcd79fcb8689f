"""The shot as the artist sets it up, saved in the .blend: footage, shot folder, model
profile and the merge look. Run state is never stored here (``run_state.py`` keeps it in
memory), nor are executables: they come from preferences."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.merge_file import COLOR_MODES, MOUTH_MODES
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


def _profile_changed(self, context) -> None:
    self.train_minutes = PROFILES[self.profile].default_minutes


class FaceGraftShot(bpy.types.PropertyGroup):
    plate: bpy.props.StringProperty(name="Plate", subtype="FILE_PATH",
                                    description="Footage of the performer whose face is replaced")
    source: bpy.props.StringProperty(name="Source", subtype="FILE_PATH",
                                     description="Footage of the person whose face goes in")
    shot_folder: bpy.props.StringProperty(
        name="Shot Folder", subtype="DIR_PATH",
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


def absolute(path: str) -> Path | None:
    """A path property as an absolute path ('//' is the .blend's folder), or None."""
    return Path(bpy.path.abspath(path)) if path else None


def shot_settings(scene: bpy.types.Scene) -> ShotSettings | None:
    """The scene's shot as the stage table's settings; None until plate and source are set."""
    shot = scene.facegraft
    plate, source = absolute(shot.plate), absolute(shot.source)
    if plate is None or source is None:
        return None
    return ShotSettings(plate=plate, source=source, profile=shot.profile,
                        minutes=shot.train_minutes, color=shot.color, mouth=shot.mouth)


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
