"""What is running or has failed, per shot folder and step: kept in memory only, never in
the .blend, so a file saved mid-run reopens clean. Opening a file forgets it all (the
workers of the file that was open are stopped)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import bpy

from ..common.child_process import ChildProcess


@dataclass
class StepRun:
    status: str  # "RUNNING" or "FAILED"
    progress: float = 0.0
    eta_s: float | None = None
    detail: str = ""  # Run All's current step, "8/15: guides plate"
    message: str = ""  # why it failed, in the artist's terms
    inputs: tuple = ()  # what it failed on: a change clears the failure
    job: ChildProcess | None = field(default=None, repr=False)


_runs: dict[tuple[str, str], StepRun] = {}


def _key(folder: Path | None, step: str) -> tuple[str, str]:
    return (str(folder) if folder else "", step)


def get(folder: Path | None, step: str) -> StepRun | None:
    return _runs.get(_key(folder, step))


def start(folder: Path | None, step: str, job: ChildProcess | None = None) -> StepRun:
    run = StepRun("RUNNING", job=job)
    _runs[_key(folder, step)] = run
    return run


def fail(folder: Path | None, step: str, message: str, inputs: tuple = ()) -> None:
    _runs[_key(folder, step)] = StepRun("FAILED", message=message, inputs=inputs)


def clear(folder: Path | None, step: str) -> None:
    _runs.pop(_key(folder, step), None)


def running(folder: Path | None) -> list[str]:
    """The steps running on this shot folder."""
    return [step for (shot, step), run in _runs.items()
            if shot == _key(folder, "")[0] and run.status == "RUNNING"]


def forget_all() -> None:
    for run in _runs.values():
        if run.job is not None:
            run.job.cancel()
    _runs.clear()


@bpy.app.handlers.persistent
def _on_load(*_args) -> None:
    forget_all()


def register() -> None:
    if _on_load not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load)


def unregister() -> None:
    if _on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load)
