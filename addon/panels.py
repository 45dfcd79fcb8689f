"""The FaceGraft panel in the 3D viewport's and the Movie Clip editor's sidebars.

Until the worker checks out, one setup box (Install Worker, Check Worker). Then the shot
(footage, folder, frame range, the face to follow, profile and training time) with Run
All as the primary action and a cue for the next step, and one sub-panel per section of
the stage table's plan with a row per step: its button (greyed, saying why, while a step
it depends on runs), status, progress, time left and Stop. The Output section also holds
the merge look. No draw raises: whatever is on disk, the panel draws.
"""

from __future__ import annotations

import bpy

from ..common.errors import FaceGraftError
from ..common.shot_layout import ShotLayout
from ..common.stage_table import SECTIONS, Step
from . import run_state
from .messages import sentence
from .operators import plan_of, waits_for
from .step_status import DONE, FAILED, LABELS, RUNNING, step_status
from .worker_setup import draw_worker, worker_ready

SPACES = (("VIEW_3D", "VIEW3D"), ("CLIP_EDITOR", "CLIP"))


def draw_shot(layout, context) -> None:
    ready, _ = worker_ready(context)
    if not ready:
        layout.label(text="Set up FaceGraft's worker first")
        draw_worker(layout, context)
        layout.operator("preferences.addon_show", text="Open Preferences",
                        icon="PREFERENCES").module = _root_package()
        return
    shot = context.scene.facegraft
    column = layout.column(align=True)
    column.operator("facegraft.load_plate", icon="FILE_MOVIE")
    column.prop(shot, "plate")
    column.prop(shot, "source")
    column.prop(shot, "shot_folder")
    layout.prop(shot, "use_frame_range")
    row = layout.row(align=True)
    row.prop(shot, "source_start")
    row.prop(shot, "source_end")
    row = layout.row(align=True)
    row.prop(shot, "use_pick")
    row.operator("facegraft.pick_face", text="", icon="EYEDROPPER")
    if shot.use_pick:
        layout.label(text=f"Follows the face at {shot.pick[0]}, {shot.pick[1]}")
    row = layout.row(align=True)
    row.prop(shot, "profile")
    row.prop(shot, "train_minutes")
    try:
        folder, plan = plan_of(context)
    except FaceGraftError as exc:
        layout.label(text=sentence(str(exc)), icon="INFO")
        return
    running = run_state.running(folder)
    big = layout.row()
    big.scale_y = 1.5
    _run_row(big, layout, folder, "run", "Run All", "facegraft.run_all", "PLAY", None,
             waiting=waits_for(plan, "run", running))
    _next_step_cue(layout, context, folder, plan)
    layout.operator("facegraft.open_log", icon="TEXT")


def _next_step_cue(layout, context, folder, plan: list[Step]) -> None:
    for step in plan:
        if step_status(context.scene, folder, step) != DONE:
            layout.label(text=f"Next: {step.label} ({step.section})", icon="FORWARD")
            return
    layout.label(text="Every step is done: the final frames are in the shot folder",
                 icon="CHECKMARK")


def draw_section(layout, context, section: str) -> None:
    try:
        folder, plan = plan_of(context)
    except FaceGraftError:
        layout.label(text="Set up the shot first")
        return
    running = run_state.running(folder)
    for step in plan:
        if step.section == section:
            status = step_status(context.scene, folder, step)
            _run_row(layout.row(align=True), layout, folder, step.name, step.label,
                     "facegraft.run_step", None, step, status,
                     waiting=waits_for(plan, step.name, running))
    if section == SECTIONS[0] and ShotLayout(folder).plate.track_mask.is_dir():
        layout.label(text="The plate's track leaves out plate/track_mask", icon="MOD_MASK")
    if section == SECTIONS[-1]:
        _draw_merge_look(layout, context)
        _run_row(layout.row(align=True), layout, folder, "track-mask", "Track Around Occluders",
                 "facegraft.track_mask", "MOD_MASK", None,
                 waiting=waits_for(plan, "run", running))


def _draw_merge_look(layout, context) -> None:
    shot = context.scene.facegraft
    box = layout.box()
    box.label(text="Merge Look")
    box.prop(shot, "color")
    box.prop(shot, "mouth")
    row = box.row(align=True)
    row.prop(shot, "erode")
    row.prop(shot, "feather")
    box.prop(shot, "shading")
    box.prop(shot, "detail")
    box.prop(shot, "outline")


def _run_row(row, layout, folder, name: str, label: str, operator: str, icon,
             step: Step | None, status: str | None = None, waiting: str = "") -> None:
    run = run_state.get(folder, name)
    status = status or (run.status if run else None)
    button = row.operator(operator, text=label, **({"icon": icon} if icon else {}))
    if step is not None:
        button.step = name
    if status == RUNNING and run is not None:
        text = f"{run.progress * 100:.0f} %"
        if run.eta_s is not None:
            text += f", {run.eta_s / 60:.0f} min left" if run.eta_s > 90 else \
                f", {run.eta_s:.0f} s left"
        row.progress(factor=run.progress, text=text)
        row.operator("facegraft.stop", text="", icon="CANCEL").step = name
        if run.detail:
            layout.label(text=f"{label} {run.detail}")
        return
    if waiting:
        row.enabled = False
        row.label(text=f"Waits for {waiting}")
    elif status is not None:
        row.label(text=LABELS[status])
    if status == FAILED and run is not None and run.message:
        layout.label(text=run.message, icon="ERROR")


def _root_package() -> str:
    from .preferences import ROOT_PACKAGE

    return ROOT_PACKAGE


def _safe(draw, layout, context, *args) -> None:
    """A panel's draw that never raises: an unexpected problem is one line in the panel."""
    try:
        draw(layout, context, *args)
    except Exception as exc:  # noqa: BLE001  (the panel must always draw)
        layout.label(text=f"FaceGraft cannot show this: {exc}", icon="ERROR")


class ShotPanel:
    bl_label = "FaceGraft"
    bl_region_type = "UI"
    bl_category = "FaceGraft"

    def draw(self, context):
        _safe(draw_shot, self.layout, context)


class SectionPanel:
    bl_region_type = "UI"
    bl_category = "FaceGraft"
    section = ""

    @classmethod
    def poll(cls, context):
        try:
            return worker_ready(context)[0]
        except Exception:  # noqa: BLE001  (poll must not raise either)
            return False

    def draw(self, context):
        _safe(draw_section, self.layout, context, self.section)


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
