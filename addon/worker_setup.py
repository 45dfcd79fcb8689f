"""Setting up the worker from Blender, without a terminal: Install Worker (a virtual
environment with the pinned packages in the extension's user folder, from the package
index or a folder of wheels: ``common/worker_environment.py``), Check Worker (the worker's
versions and device) and Cancel. Both run as child processes with a progress bar; Blender
stays responsive.

Whether the worker is ready is remembered in memory and in the extension's user folder
(``worker_check.json``: the last good check of a Python, valid while that Python is
unchanged), so the panel shows the stages at once in the next session.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import bpy

from ..common.atomic import write_bytes_atomic
from ..common.child_process import ChildProcess
from ..common.errors import FaceGraftError
from ..common.worker_environment import check_failure, worker_environ
from .preferences import ROOT_PACKAGE, get_preferences
from .worker import installed_worker_folder, resolve_worker_python

CHECK_FILE = "worker_check.json"


@dataclass
class WorkerState:
    report: dict | None = None  # the last good check
    python: str = ""  # of this Python
    python_mtime: int = 0  # as it was then
    error: str = ""  # why the last check or install failed
    job: ChildProcess | None = None  # an install or a check running
    job_kind: str = ""  # "install" or "check"
    progress: float = 0.0
    loaded: bool = False  # the check file was read


STATE = WorkerState()


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def _check_file() -> Path | None:
    try:
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, create=True)) / CHECK_FILE
    except ValueError:  # not an installed extension: nothing to keep between sessions
        return None


def _load_saved_check() -> None:
    STATE.loaded = True
    path = _check_file()
    try:
        saved = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and isinstance(saved.get("report"), dict):
        STATE.report, STATE.python = saved["report"], str(saved.get("python", ""))
        STATE.python_mtime = int(saved.get("python_mtime", 0))


def remember_check(python: Path, report: dict) -> None:
    STATE.report, STATE.python, STATE.python_mtime = report, str(python), _mtime(python)
    STATE.error = ""
    path = _check_file()
    if path is not None:
        try:
            write_bytes_atomic(path, json.dumps({"python": str(python), "python_mtime":
                                                 STATE.python_mtime, "report": report}).encode())
        except OSError:
            pass  # remembered for this session only


def current_python(context=None) -> Path:
    prefs = get_preferences(context)
    return resolve_worker_python(prefs.worker_python if prefs else "")


def worker_ready(context=None) -> tuple[bool, str]:
    """Whether the worker checked out (the Python in use now, unchanged since), and if
    not, why, in one line."""
    if not STATE.loaded:
        _load_saved_check()
    try:
        python = current_python(context)
    except FaceGraftError as exc:
        return False, str(exc)
    if STATE.report and STATE.python == str(python) and STATE.python_mtime == _mtime(python):
        return True, ""
    return False, STATE.error or "The worker has not been checked yet: click Check Worker"


class WorkerJobOperator:
    """A child process with a progress bar (modal; in background mode it simply waits)."""

    _timer = None
    kind = ""

    @classmethod
    def no_job_running(cls) -> bool:
        """poll(): one worker job at a time."""
        if STATE.job is not None:
            cls.poll_message_set("Wait for the worker job running now, or cancel it")
            return False
        return True

    def start_job(self, context, argv: list[str]):
        STATE.job, STATE.job_kind, STATE.progress, STATE.error = None, self.kind, 0.0, ""
        STATE.job = ChildProcess(argv, env=worker_environ()).start()
        if bpy.app.background:
            for event in STATE.job.iter_events():
                if self._handle(context, event):
                    return self._end(context, event.returncode)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if STATE.job is None:  # cancelled
            self._stop_timer(context)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for job_event in STATE.job.poll():
            if self._handle(context, job_event):
                self._stop_timer(context)
                return self._end(context, job_event.returncode)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"PASS_THROUGH"}

    def _handle(self, context, event) -> bool:
        """Take one event; True at the process's end."""
        if event.kind == "progress":
            STATE.progress = event.fraction
        elif event.kind in ("done", "output"):
            self.on_output(context, event)
        return event.kind == "exit"

    def _end(self, context, returncode: int):
        job, STATE.job = STATE.job, None
        if returncode != 0:
            STATE.error = self.failure(job, returncode) if job else "stopped"
            self.report({"ERROR"}, f"{self.bl_label}: {STATE.error}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"{self.bl_label}: done")
        return {"FINISHED"}

    def _stop_timer(self, context) -> None:
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None

    def on_output(self, context, event) -> None:
        """The job's "done" event or a line it printed."""

    def failure(self, job: ChildProcess, returncode: int) -> str:
        return job.failure(returncode)


class FACEGRAFT_OT_install_worker(WorkerJobOperator, bpy.types.Operator):
    """Install FaceGraft's worker (torch, MediaPipe, OpenCV: about 1 GB) into the
    extension's user folder, from the package index or the folder of wheels set here"""

    bl_idname = "facegraft.install_worker"
    bl_label = "Install Worker"
    kind = "install"

    @classmethod
    def poll(cls, context):
        if not cls.no_job_running():
            return False
        if installed_worker_folder() is None:
            cls.poll_message_set("FaceGraft runs from a checkout here: its .venv is the worker")
            return False
        return True

    def execute(self, context):
        prefs = get_preferences(context)
        wheels = bpy.path.abspath(prefs.wheels_folder) if prefs and prefs.wheels_folder else ""
        if not wheels and not bpy.app.online_access:
            self.report({"ERROR"}, "Blender's online access is off (Preferences > System > "
                        "Network): allow it, or choose a folder of wheels")
            return {"CANCELLED"}
        argv = [sys.executable, "-m", "facegraft", "worker-install", "--target",
                str(installed_worker_folder()), "--progress", "json"]
        if wheels:
            argv += ["--wheels", wheels]
        return self.start_job(context, argv)

    def on_output(self, context, event) -> None:
        if event.kind == "done" and event.data.get("facegraft"):
            report = {k: v for k, v in event.data.items() if k not in ("event", "stage",
                                                                        "seconds", "output")}
            remember_check(Path(event.data["output"]), report)


class FACEGRAFT_OT_check_worker(WorkerJobOperator, bpy.types.Operator):
    """Check the worker: its Python, torch, MediaPipe and FaceGraft versions, and the
    device it computes on (CUDA GPU or CPU)"""

    bl_idname = "facegraft.check_worker"
    bl_label = "Check Worker"
    kind = "check"

    @classmethod
    def poll(cls, context):
        return cls.no_job_running()

    def execute(self, context):
        try:
            self._python = current_python(context)
        except FaceGraftError as exc:
            STATE.error = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        return self.start_job(context, [str(self._python), "-m", "facegraft", "worker-check"])

    def on_output(self, context, event) -> None:
        try:
            report = json.loads(event.message)
        except ValueError:
            return
        if isinstance(report, dict) and report.get("facegraft"):
            remember_check(self._python, report)

    def failure(self, job: ChildProcess, returncode: int) -> str:
        return check_failure(self._python, "\n".join(job.stderr_tail))


class FACEGRAFT_OT_cancel_worker_job(bpy.types.Operator):
    """Stop the worker installation or check (nothing half-installed is left active)"""

    bl_idname = "facegraft.cancel_worker_job"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return STATE.job is not None

    def execute(self, context):
        job, STATE.job = STATE.job, None
        if job is not None:
            job.cancel()
        STATE.error = "the last worker job was cancelled"
        return {"FINISHED"}


def draw_worker(layout, context) -> None:
    """The worker's box: in the preferences and, until the worker checks out, in place of
    the panel's stages."""
    ready, why = worker_ready(context)
    box = layout.box()
    if STATE.job is not None:
        row = box.row(align=True)
        doing = "Installing" if STATE.job_kind == "install" else "Checking"
        row.progress(factor=STATE.progress,
                     text=f"{doing} the worker {STATE.progress * 100:.0f} %")
        row.operator("facegraft.cancel_worker_job", text="", icon="CANCEL")
    elif ready:
        report = STATE.report
        box.label(text=f"Worker ready: FaceGraft {report.get('facegraft')}, Python "
                       f"{report.get('python_version')}", icon="CHECKMARK")
        box.label(text=f"torch {report.get('torch')}, MediaPipe {report.get('mediapipe')}")
        box.label(text=str(report.get("device")))
    else:
        box.label(text=why, icon="ERROR" if STATE.error else "INFO")
    row = box.row(align=True)
    row.operator("facegraft.install_worker", icon="IMPORT")
    row.operator("facegraft.check_worker", icon="CHECKMARK")


def forget_worker_jobs() -> None:
    if STATE.job is not None:
        STATE.job.cancel()
        STATE.job = None


classes = (FACEGRAFT_OT_install_worker, FACEGRAFT_OT_check_worker,
           FACEGRAFT_OT_cancel_worker_job)
_register, _unregister = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register()


def unregister() -> None:
    forget_worker_jobs()
    _unregister()
