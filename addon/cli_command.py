"""``blender -b -c facegraft <stage> ...``: the same stages from a Blender binary.

``build`` runs inside this Blender; ``track`` runs the worker Python from the add-on's
preferences (or the project venv), relaying its progress.
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy

from ..cli import build_parser
from ..common.errors import FaceGraftError
from .build_stage import build_blend
from .preferences import get_preferences
from .worker import WorkerJob, resolve_worker_python

_handle = None


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.stage == "build":
        print(build_blend(args.shot, args.blend, plate=args.plate))
        return 0
    if args.stage == "track":
        prefs = get_preferences()
        python = resolve_worker_python(prefs.worker_python if prefs else "")
        forwarded = [str(args.video), "--shot", str(args.shot), "--start", str(args.start)]
        if args.end is not None:
            forwarded += ["--end", str(args.end)]
        if args.force:
            forwarded.append("--force")
        job = WorkerJob(python, "track", forwarded)
        job.start()
        returncode = job.wait()
        for event in job.poll():
            if event.kind == "exit" and event.message:
                raise FaceGraftError(event.message)
        if returncode != 0:
            raise FaceGraftError(job.failure(returncode))
        print(Path(args.shot) / "track.npz")
        return 0
    raise FaceGraftError(f"stage '{args.stage}' runs in the worker: use 'facegraft {args.stage}'")


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
