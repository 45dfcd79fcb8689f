"""``facegraft run`` (the panel's Run All): every step of a shot, from the footage to the
final frames, incrementally.

The steps are the stage table's plan of the shot (``common/stage_table.shot_plan``); the
shot folder's layout is ``common/shot_layout.py``. Each step runs as its own process
(``python -m facegraft <stage>``: Blender's and torch's native libraries never share
one). A step is skipped when its key (its arguments, the keys of the steps it reads from
and the content of the files it reads) matches the one recorded in ``pipeline.json`` when
it last finished, no step before it ran again and its outputs are there. A killed run
therefore resumes at the first step that had not finished; training and rendering
continue from their own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from ..common.atomic import write_bytes_atomic
from ..common.child_process import ChildEvent, ChildProcess, run_to_end
from ..common.errors import FaceGraftError
from ..common.outputs import output_is_complete
from ..common.profiles import GUIDE_NAMES, get_profile
from ..common.samples import sha256_of
from ..common.shot_layout import ROLES, ShotLayout
from ..common.stage_table import STAGES_BY_NAME, ShotSettings, Step, shot_plan
from ..common.track_file import load_track
from .video import probe_video, sequence_hash

STATE_FORMAT = "facegraft.pipeline"
STATE_VERSION = 2
MIN_SOURCE_FACE_FRAMES = 100  # fewer is no identity to learn (unless the plate is shorter)


def check_inputs(source: Path, plate: Path, shot: Path,
                 frames: dict[str, str | None] | None = None) -> None:
    """Refuse, before anything is written, what would lose or mix up a user's work, and
    frame ranges the footage does not have."""
    for role, path in (("source", source), ("plate", plate)):
        if not path.exists():
            raise FaceGraftError(f"{path}: {role} footage not found")
        info = probe_video(path)  # names the file when it is not readable footage
        _check_range(path, info.frame_count, (frames or {}).get(role), f"--{role}-frames")
    if source.resolve() == plate.resolve():
        raise FaceGraftError(f"{source}: the source and the plate are the same footage")
    shot_resolved = shot.resolve()
    for role, path in (("source", source), ("plate", plate)):
        footage_folder = (path if path.is_dir() else path.parent).resolve()
        if shot_resolved == footage_folder or footage_folder in shot_resolved.parents:
            raise FaceGraftError(
                f"{shot}: inside the {role} footage's folder {footage_folder}; put the shot "
                f"folder somewhere else so nothing is ever written among the footage")
    layout = ShotLayout(shot)
    if shot.exists() and any(shot.iterdir()) and not is_shot_folder(layout):
        raise FaceGraftError(f"{shot}: exists, is not empty and is not a FaceGraft shot; "
                             f"choose another --shot")
    state = read_state(layout)
    if state:
        was = (state.get("source_sha256"), state.get("plate_sha256"))
        now = (_file_key(source), _file_key(plate))
        if was == now[::-1] and was != now:
            raise FaceGraftError(
                f"{shot}: this shot puts {state.get('source')} onto {state.get('plate')}; the "
                f"source and plate are swapped on this command line (nothing was changed)")
        if was != now:
            raise FaceGraftError(
                f"{shot}: holds the shot of {state.get('source')} onto {state.get('plate')}; "
                f"use another --shot for other footage (nothing was changed)")


def _check_range(path: Path, count: int, frames: str | None, flag: str) -> None:
    if not frames:
        return
    first, _, end = frames.partition(":")
    first, end = int(first or 0), int(end) if end else count
    if not 0 <= first < end <= count:
        raise FaceGraftError(f"{path}: {flag} {frames} is outside the footage's {count} frames")


def is_shot_folder(layout: ShotLayout) -> bool:
    """Whether FaceGraft made this folder (by 'facegraft run' or stage by stage)."""
    return layout.pipeline_state.is_file() or any(
        layout.footage(role).track.is_file() for role in ROLES)


def read_state(layout: ShotLayout) -> dict:
    """``pipeline.json``: what each step was last run from ({} when there is none)."""
    try:
        state = json.loads(layout.pipeline_state.read_text())
    except (OSError, ValueError):
        return {}
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise FaceGraftError(f"{layout.pipeline_state}: not a shot this FaceGraft can continue")
    return state


_hashes: dict[tuple, str] = {}


def _file_key(path: Path) -> str | None:
    """sha256 of a file, hashed once per version of it (footage is read for several keys)."""
    if not path.is_file():  # a folder of images, or not written yet
        return None
    stat = path.stat()
    version = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if version not in _hashes:
        _hashes[version] = sha256_of(path)
    return _hashes[version]


def _read_key(path: Path) -> str | None:
    """What a step read: a file's sha256, a folder of images (a sequence, a tracking mask)
    by its files' names, sizes and times, so an edited frame runs the step again."""
    return sequence_hash(path) if path.is_dir() else _file_key(path)


def step_key(step: Step, keys: dict[str, str]) -> str:
    parts = [step.name, step.argv, STAGES_BY_NAME[step.stage].revision,
             [keys.get(name) for name in step.after], [_read_key(path) for path in step.reads]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class _StepRunner:
    """Runs one step's process, relaying its progress as the whole shot's."""

    def __init__(self, progress_mode: str, count: int):
        self.mode = progress_mode
        self.count = count

    def say(self, index: int, text: str) -> None:
        if self.mode == "bar":
            print(f"facegraft run: [{index + 1}/{self.count}] {text}", file=sys.stderr,
                  flush=True)

    def run(self, index: int, step: Step) -> None:
        self.say(index, step.name)
        progress = ["--progress", self.mode] if STAGES_BY_NAME[step.stage].progress else []
        child = ChildProcess([sys.executable, "-m", "facegraft", *step.argv, *progress],
                             on_stderr=self._relay_stderr)

        def relay(event: ChildEvent) -> None:
            if event.kind == "progress" and self.mode == "json":
                fraction = (index + event.fraction) / self.count
                print(json.dumps({"stage": "run", "event": "progress",
                                  "fraction": round(fraction, 4), "done": index,
                                  "total": self.count, "step": step.name,
                                  "eta_s": event.data.get("eta_s")}), flush=True)

        exit_event = run_to_end(child, relay)
        if exit_event.returncode == 130:
            raise KeyboardInterrupt
        if exit_event.returncode != 0:
            raise FaceGraftError(exit_event.message)

    def _relay_stderr(self, line: str) -> None:
        # A step's messages reach the user as they come (its progress, in bar mode); its
        # error line is reported once, as this run's error.
        if self.mode == "bar" and not line.startswith("facegraft: error: "):
            print(line, file=sys.stderr, flush=True)


def run_all(plate: Path, source: Path, shot: Path, profile: str = "cpu",
            minutes: float | None = None, steps: int | None = None,
            plate_frames: str | None = None, source_frames: str | None = None,
            pick: tuple[float, float] | None = None, guides: tuple[str, ...] = GUIDE_NAMES,
            color: str = "meanstd", mouth: str = "swap", erode: float = 0.015,
            feather: float = 0.03, shading: str = "render", detail: float = 1.0,
            outline: str = "plate", progress_mode: str = "bar") -> Path:
    plate, source, shot = Path(plate), Path(source), Path(shot)
    get_profile(profile)
    check_inputs(source, plate, shot, {"plate": plate_frames, "source": source_frames})
    settings = ShotSettings(plate=plate, source=source, profile=profile, minutes=minutes,
                            steps=steps, plate_frames=plate_frames, source_frames=source_frames,
                            pick=pick, guides=tuple(guides), color=color, mouth=mouth,
                            erode=erode, feather=feather, shading=shading, detail=detail,
                            outline=outline)
    layout = ShotLayout(shot)
    shot.mkdir(parents=True, exist_ok=True)
    state = read_state(layout) or {
        "format": STATE_FORMAT, "version": STATE_VERSION, "source": str(source.resolve()),
        "plate": str(plate.resolve()), "source_sha256": _file_key(source),
        "plate_sha256": _file_key(plate), "steps": {}}
    _save_state(layout, state)
    plan = shot_plan(shot, settings)
    runner = _StepRunner(progress_mode, len(plan))
    keys: dict[str, str] = {}
    ran: set[str] = set()
    for index, step in enumerate(plan):
        key = step_key(step, keys)
        record = state["steps"].get(step.name, {})
        if (record.get("key") == key and not ran.intersection(step.after)
                and all(output_is_complete(path) for path in step.outputs)):
            keys[step.name] = key
            runner.say(index, f"{step.name}: up to date")
            continue
        started = time.perf_counter()
        runner.run(index, step)
        if step.name == "track source":
            _check_source_length(layout)
        # The key is taken after the step, from what it read then (transfer rewrites the
        # .blend it reads; a later step reading it keys on the result).
        keys[step.name] = step_key(step, keys)
        ran.add(step.name)
        state["steps"][step.name] = {"key": keys[step.name],
                                     "seconds": round(time.perf_counter() - started, 2),
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _save_state(layout, state)
    if progress_mode == "json":
        print(json.dumps({"stage": "run", "event": "done", "output": str(shot),
                          "metrics": str(layout.metrics)}), flush=True)
    return shot


def _save_state(layout: ShotLayout, state: dict) -> None:
    write_bytes_atomic(layout.pipeline_state, json.dumps(state, indent=1).encode())


def _check_source_length(layout: ShotLayout) -> None:
    source = load_track(layout.source.track)
    faces = int(source.present.sum())
    plate_frames = None
    if layout.plate.track.is_file():
        plate_frames = load_track(layout.plate.track).frame_count
    needed = MIN_SOURCE_FACE_FRAMES if plate_frames is None else min(MIN_SOURCE_FACE_FRAMES,
                                                                     plate_frames)
    if faces < needed:
        raise FaceGraftError(
            f"{source.meta['video']}: only {faces} frames with a face; a source needs at "
            f"least {needed} to learn a face from (are --source and --plate swapped?)")
