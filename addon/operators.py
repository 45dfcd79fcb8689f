"""Operators: Load Plate, Run Step (one row of the panel: any step of the stage table's
plan), Run All and Stop.

Worker steps run in the worker process with the same command line ``facegraft run`` uses
for them, modal with a progress bar; ESC or Stop cancels. Build Scene and Transfer
Geometry act on the open scene here; Composite sets the composite up in the open scene
(the artist can render it with F12) and renders the shot's frames in the worker. The open
scene is kept copied to ``SHOT/plate/scene.blend``, so the worker steps that read the
plate's scene (Plate Guides, Composite) see what the artist sees.
"""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.child_process import ChildProcess
from ..common.errors import FaceGraftError
from ..common.shot_layout import ShotLayout
from ..common.stage_table import (
    STAGES,
    ShotSettings,
    Step,
    blocked_by,
    run_command,
    shot_plan,
)
from . import run_state
from .blend_file import save_copy_atomic
from .build import CAMERA_NAME, FACE_NAME, build_into_scene
from .composite import adopt_open_scene
from .composite_scene import image_user, setup_composite
from .messages import append_log, for_artist, sentence
from .preferences import get_preferences
from .properties import absolute, shot_folder, shot_settings
from .step_status import step_inputs
from .transfer import transfer_into_scene
from .worker import resolve_worker_python, worker_process

PREVIEW_IMAGE = "FaceGraft Training Preview"
FINAL_IMAGE = "FaceGraft Final"


def default_shot_folder(plate: Path) -> str:
    """Beside the .blend when it is saved ('//facegraft_<plate>'), else in the extension's
    user folder: never beside the footage."""
    name = f"facegraft_{plate.stem}"
    if bpy.data.filepath:
        return f"//{name}"
    from .preferences import ROOT_PACKAGE

    try:
        return bpy.utils.extension_path_user(ROOT_PACKAGE, path=f"shots/{name}", create=True)
    except ValueError:  # running from a checkout, not installed: the home folder
        return str(Path.home() / "FaceGraft" / name)


class FACEGRAFT_OT_load_plate(bpy.types.Operator):
    """Choose the plate footage: a movie, or one image of a numbered sequence (EXR, PNG,
    JPEG...); sets the scene's resolution, frame rate and range"""

    bl_idname = "facegraft.load_plate"
    bl_label = "Load Plate"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_movie: bpy.props.BoolProperty(default=True, options={"HIDDEN"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN"})

    @classmethod
    def poll(cls, context):
        return _nothing_running(cls, context)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"{path.name}: no such file")
            return {"CANCELLED"}
        try:
            clip = bpy.data.movieclips.load(str(path), check_existing=True)
        except RuntimeError:
            self.report({"ERROR"}, f"{path.name}: Blender cannot read this footage")
            return {"CANCELLED"}
        scene = context.scene
        shot = scene.facegraft
        # A sequence is its folder for the worker (numbered images, in name order).
        shot.plate = str(path.parent if clip.source == "SEQUENCE" else path)
        if not shot.shot_folder:
            shot.shot_folder = default_shot_folder(path.parent if clip.source == "SEQUENCE"
                                                   else path)
        scene.active_clip = clip
        scene.render.resolution_x, scene.render.resolution_y = clip.size
        scene.render.fps = max(1, round(clip.fps)) if clip.fps > 0 else scene.render.fps
        scene.frame_start = 1
        scene.frame_end = clip.frame_duration
        return {"FINISHED"}


class FACEGRAFT_OT_pick_face(bpy.types.Operator):
    """Follow the face under the clip's active marker (Ctrl+click the face in the Movie
    Clip editor to place one): with several people in view, tracking follows that face"""

    bl_idname = "facegraft.pick_face"
    bl_label = "Pick Face"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        clip = _picking_clip(context)
        if clip is None or clip.tracking.tracks.active is None:
            cls.poll_message_set("Ctrl+click the face in the Movie Clip editor first (it "
                                 "places a marker)")
            return False
        return _nothing_running(cls, context)

    def execute(self, context):
        clip = _picking_clip(context)
        track = clip.tracking.tracks.active
        marker = track.markers.find_frame(clip.frame_start, exact=False) or track.markers[0]
        width, height = clip.size
        shot = context.scene.facegraft
        # Markers are normalised with y up; the worker's pixel has y down.
        shot.pick = (round(marker.co[0] * width), round((1 - marker.co[1]) * height))
        shot.use_pick = True
        self.report({"INFO"}, f"Tracking follows the face at {shot.pick[0]}, {shot.pick[1]}")
        return {"FINISHED"}


def _picking_clip(context) -> bpy.types.MovieClip | None:
    space = getattr(context, "space_data", None)
    clip = getattr(space, "clip", None) if space is not None else None
    return clip or context.scene.active_clip


def _nothing_running(cls, context) -> bool:
    """poll(): refused while a step of the open shot runs (it reads these settings)."""
    if run_state.running(shot_folder(context.scene)):
        cls.poll_message_set("Wait for the running step, or stop it")
        return False
    return True


def _shot_ready(cls, context) -> bool:
    """poll(): the shot is set up and a worker is found, else say which is missing."""
    try:
        shot_of(context)  # poll runs on every redraw: no plan built here
        prefs = get_preferences(context)
        resolve_worker_python(prefs.worker_python if prefs else "")
    except FaceGraftError as exc:
        cls.poll_message_set(sentence(str(exc)))
        return False
    return True


def shot_of(context) -> tuple[Path, ShotSettings]:
    """The open scene's shot folder and settings, or why there is no shot yet."""
    settings, folder = shot_settings(context.scene), shot_folder(context.scene)
    if settings is None or folder is None:
        raise FaceGraftError("set the plate, the source and the shot folder first")
    return folder, settings


def plan_of(context) -> tuple[Path, list[Step]]:
    """The open scene's shot folder and the steps of its shot."""
    folder, settings = shot_of(context)
    return folder, shot_plan(folder, settings)


def find_step(context, name: str) -> tuple[Path, Step]:
    folder, plan = plan_of(context)
    for step in plan:
        if step.name == name:
            return folder, step
    raise FaceGraftError(f"no step '{name}'")


def save_plate_scene(context, folder: Path) -> None:
    """Keep SHOT/plate/scene.blend a copy of the open scene (when it is FaceGraft's)."""
    if bpy.data.objects.get(FACE_NAME) is not None:
        blend = ShotLayout(folder).plate.scene
        blend.parent.mkdir(parents=True, exist_ok=True)
        save_copy_atomic(blend)


def _build_in_scene(context, folder: Path) -> None:
    build_into_scene(context.scene, folder, "plate", absolute(context.scene.facegraft.plate))
    save_plate_scene(context, folder)


def _transfer_in_scene(context, folder: Path) -> None:
    transfer_into_scene(folder)
    save_plate_scene(context, folder)


def _composite_setup(context, folder: Path, blend_folder: Path | None = None) -> ShotLayout:
    """The composite set up in the open scene (its render settings stay the artist's), its
    paths relative to ``blend_folder`` (default: the open file's)."""
    layout = ShotLayout(folder)
    if blend_folder is None and bpy.data.filepath:
        blend_folder = Path(bpy.data.filepath).parent
    setup_composite(context.scene, layout.merge(context.scene.facegraft.profile), layout.exr,
                    blend_folder)
    return layout


def _before_composite(context, folder: Path) -> None:
    """Composite in the open scene, saved as the shot's composite .blend (its paths
    relative to the shot folder) for the worker to render, as 'facegraft run' does; the
    open scene's own paths stay relative to its file."""
    _composite_setup(context, folder, blend_folder=ShotLayout(folder).root)
    adopt_open_scene(folder)
    _composite_setup(context, folder)


# Steps done here, in the open scene; and what is done here before a step's worker starts.
SCENE_STEPS = {"build plate": _build_in_scene, "transfer": _transfer_in_scene}
BEFORE_WORKER = {"guides plate": save_plate_scene, "composite": _before_composite}


class WorkerOperator:
    """Runs a worker command: modal with a progress bar, ESC cancels, Blender stays
    responsive; in background mode (blender -b, the bpy module) it simply waits."""

    _job: ChildProcess | None = None
    _timer = None
    _folder: Path | None = None
    _step = ""

    def start_worker(self, context, folder: Path, step: str, argv: list[str]):
        prefs = get_preferences(context)
        python = resolve_worker_python(prefs.worker_python if prefs else "")
        cache = bpy.path.abspath(prefs.cache_folder) if prefs and prefs.cache_folder else ""
        self._folder, self._step = folder, step
        self._output: list[str] = []
        self._plan = plan_of(context)[1]
        self._job = worker_process(python, argv, cache, on_stderr=self._output.append)
        self._job.start()
        run_state.start(folder, step, self._job)
        if bpy.app.background:  # no event loop: wait here
            for event in self._job.iter_events():
                self._handle(context, event)
            return self._finish(context, self._job.wait())
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        run = run_state.get(self._folder, self._step)
        if event.type == "ESC" or run is None or run.job is not self._job:
            self._job.cancel()
            run_state.clear(self._folder, self._step)
            self.report({"WARNING"}, f"{self.bl_label} stopped")
            self._cleanup(context)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self.on_tick(context)
        for worker_event in self._job.poll():
            self._handle(context, worker_event)
            if worker_event.kind == "exit":
                self._cleanup(context)
                return self._finish(context, worker_event.returncode)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"PASS_THROUGH"}

    def _handle(self, context, event) -> None:
        run = run_state.get(self._folder, self._step)
        if event.kind == "progress" and run is not None:
            run.progress = event.fraction
            run.eta_s = event.data.get("eta_s")
            if event.data.get("step"):
                run.detail = f"{event.data['done'] + 1}/{event.data['total']}: " \
                             f"{event.data['step']}"
            if not bpy.app.background:
                context.window_manager.progress_update(int(event.fraction * 100))

    def _finish(self, context, returncode: int):
        failure = self._job.failure(returncode)
        append_log(self._folder, self._step, self._job.argv, list(self._output),
                   failure or "done")
        if returncode != 0:
            message = for_artist(failure, self._folder, self._plan)
            run_state.fail(self._folder, self._step, message, self._failure_inputs())
            self.report({"ERROR"}, f"{self.bl_label}: {message}")
            return {"CANCELLED"}
        run_state.clear(self._folder, self._step)
        try:
            self.on_success(context)
        except (FaceGraftError, RuntimeError) as exc:
            run_state.fail(self._folder, self._step, str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return {"FINISHED"}

    def _cleanup(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()

    def _failure_inputs(self) -> tuple:
        step = next((s for s in self._plan if s.name == self._step), None)
        return step_inputs(step) if step is not None else ()

    def on_tick(self, context) -> None:
        """Called on every timer tick while the worker runs."""

    def on_success(self, context) -> None:
        """Called once the worker has finished without error."""


class FACEGRAFT_OT_run_step(WorkerOperator, bpy.types.Operator):
    """Run one step of the shot (worker steps in the worker process; ESC stops, and the
    next run continues where it stopped)"""

    bl_idname = "facegraft.run_step"
    bl_label = "Run Step"
    bl_options = {"REGISTER"}

    step: bpy.props.StringProperty(name="Step", options={"SKIP_SAVE"})
    _preview_mtime = 0

    @classmethod
    def poll(cls, context):
        return _shot_ready(cls, context)

    def execute(self, context):
        folder = None
        try:
            folder, step = find_step(context, self.step)
            waiting = waits_for(plan_of(context)[1], step.name, run_state.running(folder))
            if waiting:  # not a failure of this step: nothing is recorded
                self.report({"ERROR"}, f"{step.label} waits for {waiting}, which is running")
                return {"CANCELLED"}
            if step.name in SCENE_STEPS:
                SCENE_STEPS[step.name](context, folder)
                run_state.clear(folder, step.name)
                return {"FINISHED"}
            if step.name in BEFORE_WORKER:
                BEFORE_WORKER[step.name](context, folder)
            return self.start_worker(context, folder, step.name, list(step.argv))
        except FaceGraftError as exc:
            message = for_artist(str(exc), folder, _plan_or_empty(context))
            step = next((s for s in _plan_or_empty(context) if s.name == self.step), None)
            run_state.fail(folder, self.step, message, step_inputs(step) if step else ())
            self.report({"ERROR"}, message)
            return {"CANCELLED"}

    def on_tick(self, context) -> None:
        if self._step == "train":
            self._show_preview(context)

    def _show_preview(self, context) -> None:
        """The newest training preview grid in the Image Editor."""
        path = ShotLayout(self._folder).preview(context.scene.facegraft.profile)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return
        if mtime == self._preview_mtime:
            return
        self._preview_mtime = mtime
        image = bpy.data.images.get(PREVIEW_IMAGE)
        if image is None:
            image = bpy.data.images.load(str(path))
            image.name = PREVIEW_IMAGE
        else:
            image.reload()
        for area in context.screen.areas if context.screen else ():
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image


class ShotCommand(WorkerOperator):
    """A worker command on the whole shot rather than one of its steps: refused while any
    step runs (it reads the shot's settings and writes what steps read)."""

    shot_command = ""  # the stage, and the name its run is remembered by

    @classmethod
    def poll(cls, context):
        return _shot_ready(cls, context) and _nothing_running(cls, context)

    def argv(self, folder: Path, settings: ShotSettings) -> list[str]:
        raise NotImplementedError

    def execute(self, context):
        folder = None
        try:
            folder, settings = shot_of(context)
            argv = self.argv(folder, settings)
            return self.start_worker(context, folder, self.shot_command, argv)
        except FaceGraftError as exc:
            message = for_artist(str(exc), folder, _plan_or_empty(context))
            run_state.fail(folder, self.shot_command, message)
            self.report({"ERROR"}, message)
            return {"CANCELLED"}


class FACEGRAFT_OT_run_all(ShotCommand, bpy.types.Operator):
    """Run every step from the plate and source footage to the final shot (in the worker;
    ESC stops, the next Run All continues where it stopped)"""

    bl_idname = "facegraft.run_all"
    bl_label = "Run All"
    shot_command = "run"

    def argv(self, folder: Path, settings: ShotSettings) -> list[str]:
        return run_command(folder, settings)

    def on_success(self, context) -> None:
        """The result in the open scene, as the step-by-step route leaves it (the shot's
        plate/scene.blend is already the same scene: it is not saved again)."""
        folder = self._folder
        build_into_scene(context.scene, folder, "plate", absolute(context.scene.facegraft.plate))
        transfer_into_scene(folder)
        load_final_frames(context, _composite_setup(context, folder))


def load_final_frames(context, layout: ShotLayout) -> bpy.types.Image:
    """The shot's final frames as an image sequence: in the Image Editor and over the plate
    as the camera's second background, so scrubbing the timeline plays the result."""
    scene = context.scene
    first = layout.final_frame(scene.frame_start)
    if not first.is_file():
        raise FaceGraftError(f"{first}: no final frames")
    image = bpy.data.images.get(FINAL_IMAGE)
    if image is not None:
        bpy.data.images.remove(image)
    image = bpy.data.images.load(str(first))
    image.name = FINAL_IMAGE
    image.source = "SEQUENCE"
    frames = scene.frame_end - scene.frame_start + 1
    for area in context.screen.areas if context.screen else ():
        if area.type == "IMAGE_EDITOR":
            space = area.spaces.active
            space.image = image
            image_user(space.image_user, scene.frame_start, frames)
    camera = bpy.data.objects.get(CAMERA_NAME)
    if camera is not None:
        backgrounds = camera.data.background_images
        for background in list(backgrounds):
            if background.image is not None and background.image.name == FINAL_IMAGE:
                backgrounds.remove(background)
        background = backgrounds.new()
        background.source = "IMAGE"
        background.image = image
        image_user(background.image_user, scene.frame_start, frames)
        background.display_depth = "FRONT"
        camera.data.show_background_images = True
    return image


class FACEGRAFT_OT_track_mask(ShotCommand, bpy.types.Operator):
    """Keep the shot's occlusion matte (your corrections included) as what the plate's
    track must not see, so the face mesh no longer bends towards the occluders; Run All
    then tracks the plate again and redoes what follows (training too)"""

    bl_idname = "facegraft.track_mask"
    bl_label = "Track Around Occluders"
    shot_command = "track-mask"

    def argv(self, folder: Path, settings: ShotSettings) -> list[str]:
        return ["track-mask", "--shot", str(folder), "--profile", settings.profile]


class FACEGRAFT_OT_stop(bpy.types.Operator):
    """Stop this step's worker (the next run continues where it stopped)"""

    bl_idname = "facegraft.stop"
    bl_label = "Stop"

    step: bpy.props.StringProperty(name="Step", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if not run_state.running(shot_folder(context.scene)):
            cls.poll_message_set("Nothing is running")
            return False
        return True

    def execute(self, context):
        folder = shot_folder(context.scene)
        run = run_state.get(folder, self.step)
        if run is not None and run.job is not None:
            run.job.cancel()
        run_state.clear(folder, self.step)
        return {"FINISHED"}


class FACEGRAFT_OT_open_log(bpy.types.Operator):
    """Open the shot's log (what each step run from here printed, and why one failed) in
    the Text Editor: the file to hand to support"""

    bl_idname = "facegraft.open_log"
    bl_label = "Open Log"

    @classmethod
    def poll(cls, context):
        folder = shot_folder(context.scene)
        if folder is None or not ShotLayout(folder).log.is_file():
            cls.poll_message_set("No log yet: it is written when a step runs")
            return False
        return True

    def execute(self, context):
        path = ShotLayout(shot_folder(context.scene)).log
        text = next((t for t in bpy.data.texts if t.filepath and
                     Path(bpy.path.abspath(t.filepath)) == path), None)
        if text is None:
            text = bpy.data.texts.load(str(path))
        else:
            text.from_string(path.read_text(encoding="utf-8", errors="replace"))
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        else:
            self.report({"INFO"}, f"The log is in the Text Editor as '{text.name}'")
        return {"FINISHED"}


def _plan_or_empty(context) -> list[Step]:
    try:
        return plan_of(context)[1]
    except FaceGraftError:
        return []


def waits_for(plan: list[Step], name: str, running: list[str]) -> str:
    """The running steps step ``name`` waits for, as their buttons say them ('': none)."""
    labels = {**{stage.name: stage.label for stage in STAGES},
              **{step.name: step.label for step in plan}}
    return ", ".join(labels[other] for other in blocked_by(plan, name, running))


classes = (FACEGRAFT_OT_load_plate, FACEGRAFT_OT_pick_face, FACEGRAFT_OT_run_step,
           FACEGRAFT_OT_run_all, FACEGRAFT_OT_track_mask, FACEGRAFT_OT_stop,
           FACEGRAFT_OT_open_log)
register, unregister = bpy.utils.register_classes_factory(classes)
