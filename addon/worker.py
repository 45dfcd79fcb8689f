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
from ..common.worker_environment import environment_python, worker_environ

REPO_VENV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
INSTALLED_WORKER = "worker"  # the installed environment, in the extension's user folder
NO_WORKER = ("no worker yet: install FaceGraft's worker in Preferences > Add-ons > FaceGraft "
             "(Install Worker), or choose a Python with torch and mediapipe there")


def installed_worker_folder(create: bool = False) -> Path | None:
    """Where Install Worker puts the worker environment: the extension's user folder
    (None when FaceGraft runs from a checkout, not as an installed extension)."""
    import bpy

    from .preferences import ROOT_PACKAGE

    try:
        return Path(bpy.utils.extension_path_user(ROOT_PACKAGE, path=INSTALLED_WORKER,
                                                  create=create))
    except ValueError:
        return None


def resolve_worker_python(preference: str = "") -> Path:
    """The interpreter that runs the worker: the Python chosen in the preferences, else
    FACEGRAFT_WORKER_PYTHON, else the installed worker environment, else a checkout's
    .venv. Never from a .blend file."""
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
    installed = installed_worker_folder()
    if installed is not None and environment_python(installed).is_file():
        return environment_python(installed)
    if REPO_VENV_PYTHON.is_file():
        return REPO_VENV_PYTHON
    if importlib.util.find_spec("mediapipe") is not None:
        return Path(sys.executable)  # Blender as a Python module inside the project venv
    raise FaceGraftError(NO_WORKER)


def worker_process(python: Path, argv: list[str], cache_folder: str = "",
                   on_stderr: Callable[[str], None] | None = None) -> ChildProcess:
    """The worker running ``facegraft ARGV`` with JSON-lines progress (not started yet),
    with this extension's code first on its path."""
    env = worker_environ()
    if cache_folder:
        env["FACEGRAFT_CACHE"] = cache_folder
    stage = STAGES_BY_NAME.get(argv[0]) if argv else None
    progress = ["--progress", "json"] if stage is not None and stage.progress else []
    return ChildProcess([str(python), "-m", "facegraft", *argv, *progress], env=env,
                        on_stderr=on_stderr)
