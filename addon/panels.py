"""The FaceGraft panel, in the 3D viewport's and the Movie Clip editor's sidebars."""

from __future__ import annotations

import bpy

from .stage_status import stage_status

STAGE_ROWS = (
    ("track", "Track", "facegraft.track", "TRACKING"),
    ("build", "Build Scene", "facegraft.build_scene", "SCENE_DATA"),
    ("source_track", "Track Source", "facegraft.track_source", "TRACKING"),
    ("transfer", "Transfer Geometry", "facegraft.transfer", "SHAPEKEY_DATA"),
    ("guides", "Guides", "facegraft.guides", "NODE_MATERIAL"),
    ("dataset", "Dataset", "facegraft.dataset", "FILE_CACHE"),
    ("source_prepare", "Prepare Source", "facegraft.prepare_source", "FILE_CACHE"),
    ("train", "Train", "facegraft.train", "EXPERIMENTAL"),
    ("swap", "Swap", "facegraft.swap", "FACE_MAPS"),
    ("merge", "Merge", "facegraft.merge", "IMAGE_RGB_ALPHA"),
    ("composite", "Composite", "facegraft.composite", "NODE_COMPOSITING"),
)


def draw_facegraft(layout, context) -> None:
    shot = context.scene.facegraft
    column = layout.column(align=True)
    column.operator("facegraft.load_plate", icon="FILE_MOVIE")
    column.prop(shot, "plate")
    column.prop(shot, "source")
    column.prop(shot, "shot_folder")
    row = layout.row(align=True)
    row.prop(shot, "profile")
    row.prop(shot, "train_minutes")
    layout.separator()
    _stage_row(layout, context, "run_all", "Run All", "facegraft.run_all", "PLAY")
    layout.separator()
    for key, label, operator, icon in STAGE_ROWS:
        _stage_row(layout, context, key, label, operator, icon)


def _stage_row(layout, context, key: str, label: str, operator: str, icon: str) -> None:
    state = getattr(context.scene.facegraft, key)
    status = stage_status(context.scene, key)
    row = layout.row(align=True)
    row.enabled = status != "RUNNING"
    row.operator(operator, text=label, icon=icon)
    if status == "RUNNING":
        row.progress(factor=state.progress, text=f"{state.progress * 100:.0f} %")
    else:
        row.label(text=state.bl_rna.properties["status"].enum_items[status].name)
    if status == "FAILED" and state.message:
        layout.label(text=state.message, icon="ERROR")


class VIEW3D_PT_facegraft(bpy.types.Panel):
    bl_label = "FaceGraft"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "FaceGraft"

    def draw(self, context):
        draw_facegraft(self.layout, context)


class CLIP_PT_facegraft(bpy.types.Panel):
    bl_label = "FaceGraft"
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "FaceGraft"

    def draw(self, context):
        draw_facegraft(self.layout, context)


classes = (VIEW3D_PT_facegraft, CLIP_PT_facegraft)
register, unregister = bpy.utils.register_classes_factory(classes)
