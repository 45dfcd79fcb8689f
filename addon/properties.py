"""The shot as the artist sets it up (saved in the .blend): footage and shot folder, and
each stage's run state. Executables are never stored here: they come from preferences."""

from __future__ import annotations

import bpy

STATUS_ITEMS = (
    ("NOT_RUN", "Not Run", ""),
    ("RUNNING", "Running", ""),
    ("DONE", "Done", ""),
    ("STALE", "Stale", "Its inputs changed since it ran"),
    ("FAILED", "Failed", ""),
)


class FaceGraftStageState(bpy.types.PropertyGroup):
    status: bpy.props.EnumProperty(items=STATUS_ITEMS, default="NOT_RUN")
    progress: bpy.props.FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: bpy.props.StringProperty()


class FaceGraftShot(bpy.types.PropertyGroup):
    plate: bpy.props.StringProperty(name="Plate", subtype="FILE_PATH",
                                    description="Footage of the performer whose face is replaced")
    source: bpy.props.StringProperty(name="Source", subtype="FILE_PATH",
                                     description="Footage of the person whose face goes in")
    shot_folder: bpy.props.StringProperty(name="Shot Folder", subtype="DIR_PATH",
                                          description="Where every stage writes its files")
    track: bpy.props.PointerProperty(type=FaceGraftStageState)
    build: bpy.props.PointerProperty(type=FaceGraftStageState)
    source_track: bpy.props.PointerProperty(type=FaceGraftStageState)
    transfer: bpy.props.PointerProperty(type=FaceGraftStageState)
    guides: bpy.props.PointerProperty(type=FaceGraftStageState)
    dataset: bpy.props.PointerProperty(type=FaceGraftStageState)
    source_prepare: bpy.props.PointerProperty(type=FaceGraftStageState)
    train: bpy.props.PointerProperty(type=FaceGraftStageState)
    swap: bpy.props.PointerProperty(type=FaceGraftStageState)
    merge: bpy.props.PointerProperty(type=FaceGraftStageState)
    composite: bpy.props.PointerProperty(type=FaceGraftStageState)
    run_all: bpy.props.PointerProperty(type=FaceGraftStageState)
    profile: bpy.props.EnumProperty(
        name="Profile", default="cpu",
        items=(("tiny", "Tiny", "64 px, seconds: for tests"),
               ("cpu", "CPU", "128 px, a usable result in about 15 minutes on a laptop"),
               ("gpu", "GPU", "256 px"),
               ("hq", "HQ", "512 px")))
    train_minutes: bpy.props.FloatProperty(name="Minutes", default=15.0, min=0.1)


classes = (FaceGraftStageState, FaceGraftShot)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.facegraft = bpy.props.PointerProperty(type=FaceGraftShot)


def unregister() -> None:
    del bpy.types.Scene.facegraft
    _unregister_classes()
