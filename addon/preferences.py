"""Add-on preferences: the worker Python and the cache folder. The one accessor."""

from __future__ import annotations

import bpy

# "<root>.addon" -> "<root>": "facegraft" in the venv, "bl_ext.<repo>.facegraft" in Blender.
ROOT_PACKAGE = __package__.rpartition(".")[0]


class FaceGraftPreferences(bpy.types.AddonPreferences):
    bl_idname = ROOT_PACKAGE

    worker_python: bpy.props.StringProperty(
        name="Existing Python",
        description="A Python with torch and mediapipe to run FaceGraft's worker instead "
                    "of the one Install Worker makes (empty: that one)",
        subtype="FILE_PATH",
    )
    wheels_folder: bpy.props.StringProperty(
        name="Wheels Folder",
        description="Install the worker from this folder of wheels ('make worker-wheels' "
                    "prepares one), downloading nothing (empty: from the package index)",
        subtype="DIR_PATH",
    )
    cache_folder: bpy.props.StringProperty(
        name="Cache Folder",
        description="Where sample footage and downloads go (empty: ~/.cache/facegraft)",
        subtype="DIR_PATH",
    )

    def draw(self, context):
        from .worker_setup import draw_worker

        layout = self.layout
        layout.label(text="Worker: the Python that tracks and trains (torch, MediaPipe)")
        draw_worker(layout, context)
        layout.prop(self, "wheels_folder")
        layout.prop(self, "worker_python")
        layout.prop(self, "cache_folder")


def get_preferences(context: bpy.types.Context | None = None) -> FaceGraftPreferences | None:
    context = context or bpy.context
    addon = context.preferences.addons.get(ROOT_PACKAGE)
    return addon.preferences if addon else None


classes = (FaceGraftPreferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
