"""Running the FaceGraft worker (``python -m facegraft <stage> ...``) from Blender.

The worker is a separate process (``common/child_process.py``), so ML work never blocks or
crashes Blender; nothing here touches Blender data.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..common.child_process import ChildProcess
from ..common.errors import FaceGraftError
from ..common.stage_table import STAGES_BY_NAME

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


def worker_process(python: Path, argv: list[str], cache_folder: str = "",
                   on_stderr: Callable[[str], None] | None = None) -> ChildProcess:
    """The worker running ``facegraft ARGV`` with JSON-lines progress (not started yet)."""
    env = dict(os.environ)
    if cache_folder:
        env["FACEGRAFT_CACHE"] = cache_folder
    stage = STAGES_BY_NAME.get(argv[0]) if argv else None
    progress = ["--progress", "json"] if stage is not None and stage.progress else []
    return ChildProcess([str(python), "-m", "facegraft", *argv, *progress], env=env,
                        on_stderr=on_stderr)
