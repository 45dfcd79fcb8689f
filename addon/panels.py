"""The FaceGraft panel in the 3D viewport's and the Movie Clip editor's sidebars: the shot
(footage, folder, profile) with Run All, then one sub-panel per section of the stage
table's plan with a row per step: its button, status, progress and Stop."""

from __future__ import annotations

import bpy

from ..common.errors import FaceGraftError
from ..common.stage_table import SECTIONS, Step
from . import run_state
from .operators import plan_of
from .step_status import FAILED, LABELS, RUNNING, step_status

SPACES = (("VIEW_3D", "VIEW3D"), ("CLIP_EDITOR", "CLIP"))


def draw_shot(layout, context) -> None:
    shot = context.scene.facegraft
    column = layout.column(align=True)
    column.operator("facegraft.load_plate", icon="FILE_MOVIE")
    column.prop(shot, "plate")
    column.prop(shot, "source")
    column.prop(shot, "shot_folder")
    row = layout.row(align=True)
    row.prop(shot, "profile")
    row.prop(shot, "train_minutes")
    try:
        folder, _ = plan_of(context)
    except FaceGraftError as exc:
        layout.label(text=str(exc).capitalize(), icon="INFO")
        return
    _run_row(layout, folder, "run", "Run All", "facegraft.run_all", "PLAY", None)


def draw_section(layout, context, section: str) -> None:
    try:
        folder, plan = plan_of(context)
    except FaceGraftError:
        layout.label(text="Set up the shot first")
        return
    for step in plan:
        if step.section == section:
            status = step_status(context.scene, folder, step)
            _run_row(layout, folder, step.name, step.label, "facegraft.run_step", None, step,
                     status)


def _run_row(layout, folder, name: str, label: str, operator: str, icon, step: Step | None,
             status: str | None = None) -> None:
    run = run_state.get(folder, name)
    status = status or (run.status if run else None)
    row = layout.row(align=True)
    button = row.operator(operator, text=label, **({"icon": icon} if icon else {}))
    if step is not None:
        button.step = name
    if status == RUNNING and run is not None:
        row.enabled = True
        text = f"{run.progress * 100:.0f} %"
        if run.eta_s is not None:
            text += f", {run.eta_s / 60:.0f} min left" if run.eta_s > 90 else \
                f", {run.eta_s:.0f} s left"
        row.progress(factor=run.progress, text=text)
        row.operator("facegraft.stop", text="", icon="CANCEL").step = name
        if run.detail:
            layout.label(text=run.detail)
    elif status is not None:
        row.label(text=LABELS[status])
    if status == FAILED and run is not None and run.message:
        layout.label(text=run.message, icon="ERROR")


class ShotPanel:
    bl_label = "FaceGraft"
    bl_region_type = "UI"
    bl_category = "FaceGraft"

    def draw(self, context):
        draw_shot(self.layout, context)


class SectionPanel:
    bl_region_type = "UI"
    bl_category = "FaceGraft"
    section = ""

    def draw(self, context):
        draw_section(self.layout, context, self.section)


def _panel_classes() -> list[type]:
    """The shot panel and one sub-panel per section, in each space."""
    classes = []
    for space, prefix in SPACES:
        parent = f"{prefix}_PT_facegraft"
        classes.append(type(parent, (ShotPanel, bpy.types.Panel), {"bl_space_type": space}))
        for index, section in enumerate(SECTIONS):
            classes.append(type(f"{parent}_{index}", (SectionPanel, bpy.types.Panel), {
                "bl_label": section, "bl_space_type": space, "bl_parent_id": parent,
                "section": section}))
    return classes


classes = tuple(_panel_classes())
register, unregister = bpy.utils.register_classes_factory(classes)
