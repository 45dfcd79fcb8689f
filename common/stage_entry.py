"""Calling a stage from parsed arguments, the same way from every route (``cli.py``,
``addon/blender_command.py``), and turning what a user can cause into one line."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .atomic import write_failure
from .errors import FaceGraftError
from .stage_table import Stage, entry_kwargs

ROOT_PACKAGE = __package__.rpartition(".")[0]  # "facegraft", or "bl_ext.<repo>.facegraft"


def stage_function(stage: Stage) -> Callable:
    """The function a stage's ``entry`` names, imported now."""
    module, _, function = stage.entry.partition(":")
    return getattr(importlib.import_module(f"{ROOT_PACKAGE}.{module}"), function)


def run_stage(stage: Stage, args: argparse.Namespace) -> int:
    """Call the stage's function; print what it returns unless progress goes as JSON."""
    result = stage_function(stage)(**entry_kwargs(stage, args))
    if result is not None and getattr(args, "progress", "bar") != "json":
        print(result, flush=True)
    return 0


def _terminate(signum, frame):  # noqa: ARG001
    # The add-on and farm managers stop a stage with SIGTERM: unwind like Ctrl-C so that
    # child processes are stopped and temporary files removed.
    raise KeyboardInterrupt


def guarded(work: Callable[[], int]) -> int:
    """Run ``work`` turning every failure a user can cause into one line and an exit code:
    0 done, 1 error, 130 interrupted."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return work()
    except FaceGraftError as exc:
        print(f"facegraft: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facegraft: interrupted; no partial output was left behind", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a read-only folder: say which file and why
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"facegraft: error: {where}{write_failure(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001  (a bug: one line for the user, details kept)
        if os.environ.get("FACEGRAFT_DEBUG"):
            raise
        log = _write_crash_log()
        print(f"facegraft: error: internal error ({type(exc).__name__}: {exc}); this is a "
              f"bug, please report it with {log}", file=sys.stderr)
        return 1


def _write_crash_log() -> str:
    """The traceback of an unexpected error, kept for a bug report; returns where."""
    folder = Path(os.environ.get("FACEGRAFT_CACHE") or Path.home() / ".cache" / "facegraft"
                  ) / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / time.strftime("crash-%Y%m%d-%H%M%S.log")
        path.write_text(" ".join(sys.argv) + "\n" + traceback.format_exc())
        return str(path)
    except OSError:
        return "the command line and what it printed"
