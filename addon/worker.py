"""Running the FaceGraft worker (``python -m facegraft <stage> ...``) from Blender.

The worker is a separate process, so ML work never blocks or crashes Blender. Its
JSON-lines progress (see ``common/progress.py``) is read on a thread into a queue that
the modal operator drains on a timer; nothing here touches Blender data.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..common.errors import FaceGraftError

REPO_VENV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"


def resolve_worker_python(preference: str = "") -> Path:
    """The interpreter that runs the worker. Only ever from the user's preferences, the
    environment or the project's own venv: never from a .blend file."""
    if preference:
        path = Path(preference).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FaceGraftError(
                f"{path}: worker Python not found or not executable; set it in "
                "Preferences > Add-ons > FaceGraft"
            )
        return path
    env = os.environ.get("FACEGRAFT_WORKER_PYTHON")
    if env:
        return resolve_worker_python(env)
    if REPO_VENV_PYTHON.is_file():
        return REPO_VENV_PYTHON
    if importlib.util.find_spec("mediapipe") is not None:
        return Path(sys.executable)  # Blender as a Python module inside the project venv
    raise FaceGraftError(
        "no worker Python: set one with torch and mediapipe in Preferences > Add-ons > FaceGraft"
    )


@dataclass
class WorkerEvent:
    kind: str  # "progress", "done", "error", "exit"
    fraction: float = 0.0
    message: str = ""
    returncode: int | None = None


class WorkerJob:
    """One worker run: start it, poll its events, cancel it."""

    def __init__(self, python: Path, stage: str, args: list[str], cache_folder: str = ""):
        self.argv = [str(python), "-m", "facegraft", stage, *args, "--progress", "json"]
        self.env = dict(os.environ)
        if cache_folder:
            self.env["FACEGRAFT_CACHE"] = cache_folder
        self.events: queue.Queue[WorkerEvent] = queue.Queue()
        self.stderr_tail: list[str] = []
        self.error_message = ""
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        try:
            self.process = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL, env=self.env,
            )
        except OSError as exc:
            raise FaceGraftError(
                f"{self.argv[0]}: cannot start the worker ({exc.strerror})"
            ) from exc
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process and self.process.stdout
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            event = message.get("event")
            if event == "progress":
                self.events.put(WorkerEvent("progress", float(message.get("fraction", 0.0))))
            elif event == "done":
                self.events.put(WorkerEvent("done", 1.0, str(message.get("output", ""))))
            elif event == "error":
                self.error_message = str(message.get("message", ""))
        returncode = self.process.wait()
        self.events.put(
            WorkerEvent("exit", returncode=returncode, message=self.failure(returncode))
        )

    def _read_stderr(self) -> None:
        assert self.process and self.process.stderr
        for line in self.process.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]

    def failure(self, returncode: int) -> str:
        """One line saying why the worker failed ('' when it did not)."""
        if returncode == 0:
            return ""
        if self.error_message:
            return self.error_message
        errors = [ln for ln in self.stderr_tail if ln.startswith("facegraft: error: ")]
        if errors:
            return errors[-1].removeprefix("facegraft: error: ")
        if returncode < 0:
            return f"the worker was killed by signal {-returncode}"
        last = self.stderr_tail[-1] if self.stderr_tail else "no output"
        return f"the worker exited with status {returncode} ({last})"

    def poll(self) -> list[WorkerEvent]:
        events = []
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                return events

    def cancel(self) -> None:
        """Stop the worker (SIGTERM lets it remove its temporary files), then make sure."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def wait(self, timeout: float | None = None) -> int:
        assert self.process
        return self.process.wait(timeout=timeout)
