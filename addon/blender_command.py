"""``blender -b -c facegraft <stage> ...``: the same stages from a Blender binary, for farms.

The stages that run in Blender (the stage table's BLENDER stages: build, transfer,
composite) run inside this Blender; the others run the worker Python from the add-on's
preferences with the same arguments. Their progress is streamed to stdout as it comes
(one line per update: the worker's JSON lines with ``--progress json``, else a line of
text), so a farm manager sees the task move. Exit status: 0 done, 1 error (one line on
stderr), 2 malformed command line, 130 interrupted.
"""

from __future__ import annotations

import json
import sys

import bpy

from ..common.child_process import ChildEvent, run_to_end
from ..common.errors import FaceGraftError
from ..common.stage_entry import guarded, run_stage
from ..common.stage_table import BLENDER, STAGES_BY_NAME, build_parser
from .preferences import get_preferences
from .worker import resolve_worker_python, worker_process

_handle = None


def _run(argv: list[str]) -> int:
    args = build_parser(prog="blender -b -c facegraft").parse_args(argv)
    stage = STAGES_BY_NAME[args.stage]
    if stage.runs_in == BLENDER:
        return run_stage(stage, args)
    prefs = get_preferences()
    python = resolve_worker_python(prefs.worker_python if prefs else "")
    mode = getattr(args, "progress", "none")
    child = worker_process(python, _without_progress(argv), on_stderr=_relay_stderr)
    exit_event = run_to_end(child, lambda event: _stream(event, stage.name, mode))
    if exit_event.returncode == 130:
        raise KeyboardInterrupt
    if exit_event.returncode != 0:
        raise FaceGraftError(exit_event.message)
    return 0


def _stream(event: ChildEvent, stage: str, mode: str) -> None:
    """One line per worker update on stdout, as it comes."""
    if event.kind in ("progress", "done", "error") and mode == "json":
        print(json.dumps(event.data), flush=True)
    elif event.kind == "progress" and mode == "bar":
        eta = event.data.get("eta_s")
        step = event.data.get("step") or stage
        print(f"facegraft {step}: {event.fraction * 100:.0f} %"
              + (f", {eta:.0f} s left" if eta is not None else ""), flush=True)
    elif event.kind == "done" and event.message and mode != "json":
        print(event.message, flush=True)
    elif event.kind == "output":
        print(event.message, flush=True)


def _relay_stderr(line: str) -> None:
    # The worker's one-line error is reported once, by guarded(); its other messages
    # (warnings, the run's step names) go on to the farm log as they come.
    if not line.startswith("facegraft: error: ") and line.strip():
        print(line, file=sys.stderr, flush=True)


def _without_progress(argv: list[str]) -> list[str]:
    """The worker reports in JSON lines to this process: drop the user's --progress."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--progress":
            skip = True
        elif not item.startswith("--progress="):
            out.append(item)
    return out


def handle_cli(argv: list[str]) -> int:
    try:
        return guarded(lambda: _run(argv))
    except SystemExit as exc:  # argparse's --help and usage errors
        return int(exc.code or 0)


def register() -> None:
    global _handle
    _handle = bpy.utils.register_cli_command("facegraft", handle_cli)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
