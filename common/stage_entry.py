"""Calling a stage from parsed arguments, the same way from every route (``cli.py``,
``addon/blender_command.py``), and turning what a user can cause into one line."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Callable

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
        print(f"facegraft: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
