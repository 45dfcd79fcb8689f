"""Operators: Load Plate, one per stage (worker stages modal with ESC to cancel), Run All."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..common.errors import FaceGraftError
from ..common.profiles import PROFILE_RESOLUTION
from ..common.swap_file import merge_dir, swap_dir
from .build_stage import build_into_scene
from .composite import image_user, setup_composite
from .preferences import get_preferences
from .scene_build import FACE_NAME
from .transfer import SHAPE_KEY, transfer_into_scene
from .worker import WorkerJob, resolve_worker_python


def shot_paths(context) -> tuple[Path | None, Path | None]:
    """The plate and shot folder of the scene, absolute ('//' is the .blend's folder)."""
    shot = context.scene.facegraft
    plate = Path(bpy.path.abspath(shot.plate)) if shot.plate else None
    folder = Path(bpy.path.abspath(shot.shot_folder)) if shot.shot_folder else None
    return plate, folder


class FACEGRAFT_OT_load_plate(bpy.types.Operator):
    """Choose the plate footage; sets the scene's resolution, frame rate and range"""

    bl_idname = "facegraft.load_plate"
    bl_label = "Load Plate"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH")
    filter_movie: bpy.props.BoolProperty(default=True, options={"HIDDEN"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        if not path.is_file():
            self.report({"ERROR"}, f"{path}: no such file")
            return {"CANCELLED"}
        try:
            clip = bpy.data.movieclips.load(str(path), check_existing=True)
        except RuntimeError as exc:
            self.report({"ERROR"}, f"{path}: Blender cannot read this footage ({exc})")
            return {"CANCELLED"}
        scene = context.scene
        shot = scene.facegraft
        shot.plate = str(path)
        if not shot.shot_folder:
            shot.shot_folder = str(path.with_name(path.stem + ".facegraft"))
        scene.active_clip = clip
        scene.render.resolution_x, scene.render.resolution_y = clip.size
        scene.render.fps = max(1, round(clip.fps))
        scene.frame_start = 1
        scene.frame_end = clip.frame_duration
        shot.track.status = "STALE" if shot.track.status == "DONE" else shot.track.status
        return {"FINISHED"}




def resolution(context) -> int:
    """The crop size of the chosen model profile: guides and datasets are made at it."""
    return PROFILE_RESOLUTION[context.scene.facegraft.profile]


def required_shot_folder(context) -> Path:
    _, folder = shot_paths(context)
    if folder is None:
        raise FaceGraftError("set a shot folder first")
    return folder


def run_folder(context) -> Path:
    return required_shot_folder(context) / f"run_{context.scene.facegraft.profile}"


def source_shot_folder(context) -> Path | None:
    """The source footage's shot folder: beside the footage, named after it."""
    source = context.scene.facegraft.source
    if not source:
        return None
    path = Path(bpy.path.abspath(source))
    return path.with_name(path.stem + ".facegraft")


class WorkerStageOperator:
    """A stage that runs in the worker process: modal with a progress bar, ESC cancels,
    Blender stays responsive; in background mode it simply waits."""

    stage = ""  # the worker's stage name
    state_name = ""  # which FaceGraftStageState of the scene shows it

    _job: WorkerJob | None = None
    _timer = None

    def worker_args(self, context) -> list[str]:
        raise NotImplementedError

    def on_tick(self, context) -> None:
        """Called on every timer tick while the worker runs."""

    def on_success(self, context) -> None:
        """Called once the worker has finished without error."""

    def execute(self, context):
        state = getattr(context.scene.facegraft, self.state_name)
        try:
            args = self.worker_args(context)
            prefs = get_preferences(context)
            python = resolve_worker_python(prefs.worker_python if prefs else "")
            cache = bpy.path.abspath(prefs.cache_folder) if prefs and prefs.cache_folder else ""
            self._job = WorkerJob(python, self.stage, args, cache)
            self._job.start()
        except FaceGraftError as exc:
            state.status, state.message = "FAILED", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state.status, state.progress, state.message = "RUNNING", 0.0, ""
        if bpy.app.background:  # no event loop (blender -b, bpy module): wait here
            return self._finish(context, self._job.wait())
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 100)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        state = getattr(context.scene.facegraft, self.state_name)
        if event.type == "ESC":
            self._job.cancel()
            state.status, state.message = "NOT_RUN", "cancelled"
            self.report({"WARNING"}, f"{self.bl_label} cancelled")
            self._cleanup(context)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self.on_tick(context)
        for worker_event in self._job.poll():
            if worker_event.kind == "progress":
                state.progress = worker_event.fraction
                context.window_manager.progress_update(int(worker_event.fraction * 100))
            elif worker_event.kind == "exit":
                self._cleanup(context)
                return self._finish(context, worker_event.returncode)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"PASS_THROUGH"}

    def _finish(self, context, returncode: int):
        state = getattr(context.scene.facegraft, self.state_name)
        if returncode == 0:
            state.status, state.progress, state.message = "DONE", 1.0, ""
            try:
                self.on_success(context)
            except (FaceGraftError, RuntimeError) as exc:
                state.status, state.message = "FAILED", str(exc)
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            return {"FINISHED"}
        state.status, state.message = "FAILED", self._job.failure(returncode)
        self.report({"ERROR"}, f"{self.bl_label} failed: {state.message}")
        return {"CANCELLED"}

    def _cleanup(self, context):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()


class FACEGRAFT_OT_track(WorkerStageOperator, bpy.types.Operator):
    """Track the plate's face in the worker process (ESC cancels)"""

    bl_idname = "facegraft.track"
    bl_label = "Track"
    stage, state_name = "track", "track"

    def worker_args(self, context):
        plate, folder = shot_paths(context)
        if plate is None or folder is None:
            raise FaceGraftError("load a plate and set a shot folder first")
        return [str(plate), "--shot", str(folder)]


class FACEGRAFT_OT_track_source(WorkerStageOperator, bpy.types.Operator):
    """Track the source footage's face (into a shot folder beside it)"""

    bl_idname = "facegraft.track_source"
    bl_label = "Track Source"
    stage, state_name = "track", "source_track"

    def worker_args(self, context):
        folder = source_shot_folder(context)
        if folder is None:
            raise FaceGraftError("set the source footage first")
        return [bpy.path.abspath(context.scene.facegraft.source), "--shot", str(folder)]


class FACEGRAFT_OT_guides(WorkerStageOperator, bpy.types.Operator):
    """Render the guide passes (plate shape, and source shape when transferred)"""

    bl_idname = "facegraft.guides"
    bl_label = "Guides"
    stage, state_name = "guides", "guides"

    def worker_args(self, context):
        folder = required_shot_folder(context)
        # The worker's Blender processes read the scene from a saved copy of this file.
        copy = folder / ".facegraft_guides_scene.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(copy), copy=True, relative_remap=True)
        args = ["--shot", str(folder), "--blend", str(copy), "--size", str(resolution(context))]
        face = bpy.data.objects.get(FACE_NAME)
        keys = face.data.shape_keys if face else None
        if keys and SHAPE_KEY in keys.key_blocks:  # the swap needs the source-shaped passes
            args += ["--shape-key", SHAPE_KEY]
        return args


class FACEGRAFT_OT_dataset(WorkerStageOperator, bpy.types.Operator):
    """Write aligned crops, masks and guides of the plate for training"""

    bl_idname = "facegraft.dataset"
    bl_label = "Dataset"
    stage, state_name = "dataset", "dataset"

    def worker_args(self, context):
        folder = required_shot_folder(context)
        return ["--shot", str(folder), "--size", str(resolution(context))]


class FACEGRAFT_OT_prepare_source(WorkerStageOperator, bpy.types.Operator):
    """Build the source's own scene, its guides and its dataset (in the worker)"""

    bl_idname = "facegraft.prepare_source"
    bl_label = "Prepare Source"
    stage, state_name = "prepare", "source_prepare"

    def worker_args(self, context):
        folder = source_shot_folder(context)
        if folder is None:
            raise FaceGraftError("set the source footage and track it first")
        return ["--shot", str(folder), "--size", str(resolution(context))]


PREVIEW_IMAGE = "FaceGraft Training Preview"


class FACEGRAFT_OT_train(WorkerStageOperator, bpy.types.Operator):
    """Train the swap model on the source and the plate (in the worker; ESC stops, the
    last checkpoint stays and Train resumes from it)"""

    bl_idname = "facegraft.train"
    bl_label = "Train"
    stage, state_name = "train", "train"
    _preview_mtime = 0

    def worker_args(self, context):
        source, (_, folder) = source_shot_folder(context), shot_paths(context)
        if source is None or folder is None:
            raise FaceGraftError("set the source footage and the shot folder first")
        shot = context.scene.facegraft
        run = run_folder(context)
        args = ["--source", str(source), "--target", str(folder), "--run", str(run),
                "--profile", shot.profile, "--minutes", str(shot.train_minutes)]
        return args + (["--resume"] if (run / "checkpoint.json").is_file() else [])

    def on_tick(self, context) -> None:
        """Show the newest preview grid in the Image Editor."""
        path = run_folder(context) / "preview_latest.png"
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


class FACEGRAFT_OT_swap(WorkerStageOperator, bpy.types.Operator):
    """Render the plate's frames as the source person with the trained model"""

    bl_idname = "facegraft.swap"
    bl_label = "Swap"
    stage, state_name = "swap", "swap"

    def worker_args(self, context):
        folder = required_shot_folder(context)
        return ["--run", str(run_folder(context)), "--target", str(folder)]


def swap_folder(context) -> Path:
    return swap_dir(required_shot_folder(context), resolution(context), run_folder(context))


def merge_folder(context) -> Path:
    return merge_dir(swap_folder(context))


class FACEGRAFT_OT_merge(WorkerStageOperator, bpy.types.Operator):
    """Warp the swapped faces back onto the plate, colour matched, with their matte"""

    bl_idname = "facegraft.merge"
    bl_label = "Merge"
    stage, state_name = "merge", "merge"

    def worker_args(self, context):
        return ["--target", str(required_shot_folder(context)), "--swap",
                str(swap_folder(context))]


class FACEGRAFT_OT_composite(bpy.types.Operator):
    """Put the merged face on the face mesh and build the compositor tree over the plate
    (render with Render Animation; frames and EXR layers go into the shot folder)"""

    bl_idname = "facegraft.composite"
    bl_label = "Composite"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        state = context.scene.facegraft.composite
        try:
            folder = required_shot_folder(context)
            setup_composite(context.scene, merge_folder(context), folder / "exr")
            context.scene.render.filepath = str(folder / "final" / "final_######")
        except FaceGraftError as exc:
            state.status, state.message = "FAILED", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state.status, state.progress, state.message = "DONE", 1.0, ""
        return {"FINISHED"}


FINAL_IMAGE = "FaceGraft Final"


def load_final_frames(context, out: Path) -> bpy.types.Image:
    """The run's final frames as an image sequence: in the Image Editor and over the plate
    as the camera's second background, so scrubbing the timeline plays the result."""
    from .scene_build import CAMERA_NAME

    scene = context.scene
    first = out / "final" / f"final_{scene.frame_start:06d}.png"
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


class FACEGRAFT_OT_run_all(WorkerStageOperator, bpy.types.Operator):
    """Run every stage from the plate and source footage to the final shot (in the
    worker; ESC stops, the next Run All continues where it stopped)"""

    bl_idname = "facegraft.run_all"
    bl_label = "Run All"
    stage, state_name = "run", "run_all"

    def worker_args(self, context):
        plate, folder = shot_paths(context)
        shot = context.scene.facegraft
        if plate is None or folder is None or not shot.source:
            raise FaceGraftError("set the plate, the source footage and a shot folder first")
        return ["--source", bpy.path.abspath(shot.source), "--target", str(plate),
                "--out", str(run_all_folder(context)), "--profile", shot.profile,
                "--minutes", str(shot.train_minutes)]

    def on_success(self, context) -> None:
        load_final_frames(context, run_all_folder(context))


def run_all_folder(context) -> Path:
    """Where Run All keeps its run (its own layout: see ml/pipeline.py)."""
    return required_shot_folder(context) / "run_all"


class FACEGRAFT_OT_transfer(bpy.types.Operator):
    """Give the plate's face mesh the source person's face shape (an editable shape key)"""

    bl_idname = "facegraft.transfer"
    bl_label = "Transfer Geometry"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        state = context.scene.facegraft.transfer
        try:
            folder = source_shot_folder(context)
            if folder is None:
                raise FaceGraftError("set the source footage and track it first")
            transfer_into_scene(folder)
        except FaceGraftError as exc:
            state.status, state.message = "FAILED", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state.status, state.progress, state.message = "DONE", 1.0, ""
        return {"FINISHED"}


class FACEGRAFT_OT_build_scene(bpy.types.Operator):
    """Build the camera, plate and animated face mesh from the shot's track"""

    bl_idname = "facegraft.build_scene"
    bl_label = "Build Scene"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        plate, folder = shot_paths(context)
        state = context.scene.facegraft.build
        try:
            if folder is None:
                raise FaceGraftError("set a shot folder first")
            build_into_scene(context.scene, folder, plate)
        except FaceGraftError as exc:
            state.status, state.message = "FAILED", str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        state.status, state.progress, state.message = "DONE", 1.0, ""
        return {"FINISHED"}


classes = (
    FACEGRAFT_OT_load_plate, FACEGRAFT_OT_track, FACEGRAFT_OT_track_source,
    FACEGRAFT_OT_build_scene, FACEGRAFT_OT_transfer, FACEGRAFT_OT_guides, FACEGRAFT_OT_dataset,
    FACEGRAFT_OT_prepare_source, FACEGRAFT_OT_train, FACEGRAFT_OT_swap, FACEGRAFT_OT_merge,
    FACEGRAFT_OT_composite, FACEGRAFT_OT_run_all,
)
register, unregister = bpy.utils.register_classes_factory(classes)
