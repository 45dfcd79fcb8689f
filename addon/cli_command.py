"""``blender -b -c facegraft <stage> ...``: the same stages from a Blender binary.

``build``, ``transfer`` and ``composite`` run inside this Blender; the stages that need
torch or MediaPipe (``track``, ``guides``, ``dataset``, ``prepare``, ``train``, ``swap``,
``merge``, ``run``) run the worker Python from the add-on's preferences (or the project
venv) with the same arguments, relaying its outcome.
"""

from __future__ import annotations

import sys

import bpy

from ..cli import build_parser
from ..common.errors import FaceGraftError
from .build_stage import build_blend, transfer_blend
from .preferences import get_preferences
from .worker import WorkerJob, resolve_worker_python

_handle = None


WORKER_STAGES = {"track", "guides", "dataset", "prepare", "train", "swap", "merge", "run"}


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.stage == "build":
        print(build_blend(args.shot, args.blend, plate=args.plate))
        return 0
    if args.stage == "transfer":
        print(transfer_blend(args.source, args.blend))
        return 0
    if args.stage == "composite":
        from .composite_stage import composite, parse_scene_frames

        print(composite(args.plate_blend, args.merge, args.blend,
                        frames=parse_scene_frames(args.frames)))
        return 0
    if args.stage in WORKER_STAGES:
        prefs = get_preferences()
        python = resolve_worker_python(prefs.worker_python if prefs else "")
        forwarded = _without_progress(argv[1:])
        job = WorkerJob(python, args.stage, forwarded)
        job.start()
        returncode = job.wait()
        output = ""
        for event in job.poll():
            if event.kind == "exit" and event.message:
                raise FaceGraftError(event.message)
            if event.kind == "done":
                output = event.message
        if returncode != 0:
            raise FaceGraftError(job.failure(returncode))
        print(output)
        return 0
    raise FaceGraftError(f"stage '{args.stage}' runs in the worker: use 'facegraft {args.stage}'")


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
        return _run(argv)
    except FaceGraftError as exc:
        print(f"facegraft: error: {exc}", file=sys.stderr)
        return 1
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
