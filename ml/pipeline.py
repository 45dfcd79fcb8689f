"""``facegraft run``: every stage from the footage to the final shot, incrementally.

The run folder ``OUT`` holds ``source/`` and ``plate/`` (shot folders), ``train_<profile>/``
(the model), ``shot.blend`` (the composite scene), ``final/`` (PNG frames), ``exr/``
(multilayer EXR), ``final.mp4``, ``contact_sheet.png``, ``metrics.json`` and
``pipeline.json`` (what each stage was last run from, and how long it took).

Each stage runs as its own process (``python -m facegraft <stage>``: Blender's and torch's
native libraries never share one). A stage is skipped when its key (its arguments, the
keys of the stages it reads from and the content of the files it reads) matches the one
recorded when it last finished and no stage before it ran again. A killed run therefore
resumes at the first stage that had not finished; training and rendering continue from
their own checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..common.atomic import write_bytes_atomic
from ..common.errors import FaceGraftError
from ..common.profiles import PROFILE_RESOLUTION
from ..common.samples import sha256_of
from ..common.swap_file import merge_dir, swap_dir
from .video import probe_video

STATE_FILE = "pipeline.json"
STATE_FORMAT = "facegraft.pipeline"
STATE_VERSION = 1
DEFAULT_MINUTES = {"tiny": 1.0, "cpu": 12.0, "gpu": 20.0, "hq": 60.0}
MIN_SOURCE_FACE_FRAMES = 100  # fewer is no identity to learn (unless the plate is shorter)
SOURCE_VARIANT = "Source Identity"
ERROR_PREFIX = "facegraft: error: "


@dataclass
class RunOptions:
    profile: str = "cpu"
    minutes: float | None = None
    steps: int | None = None
    frames: str | None = None  # plate frames FIRST:END
    source_frames: str | None = None
    color: str = "meanstd"
    mouth: str = "swap"


@dataclass
class Stage:
    name: str
    argv: list[str]  # the worker command after "facegraft"
    after: list[str] = field(default_factory=list)  # stages whose outputs it reads
    reads: list[Path] = field(default_factory=list)  # files whose content is part of the key
    outputs: list[Path] = field(default_factory=list)  # must exist for the stage to be done
    reports_progress: bool = True  # takes --progress


def _range_args(frames: str | None) -> list[str]:
    if not frames:
        return []
    first, _, end = frames.partition(":")
    try:
        out = ["--start", str(int(first))]
        return out + (["--end", str(int(end))] if end else [])
    except ValueError:
        raise FaceGraftError(f"frames {frames!r}: expected FIRST:END") from None


def plan(source: Path, target: Path, out: Path, options: RunOptions) -> list[Stage]:
    size = PROFILE_RESOLUTION[options.profile]
    src, plate, run = out / "source", out / "plate", out / f"train_{options.profile}"
    src_blend, plate_blend = src / "scene.blend", plate / "scene.blend"
    length = (["--steps", str(options.steps)] if options.steps is not None else
              ["--minutes", str(options.minutes or DEFAULT_MINUTES[options.profile])])
    swapped = swap_dir(plate, size, run)
    merged = merge_dir(swapped)
    return [
        Stage("track plate", ["track", str(target), "--shot", str(plate),
                              *_range_args(options.frames)],
              reads=[target], outputs=[plate / "track.npz"]),
        Stage("track source", ["track", str(source), "--shot", str(src),
                               *_range_args(options.source_frames)],
              reads=[source], outputs=[src / "track.npz"]),
        Stage("build source", ["build", "--shot", str(src), "--blend", str(src_blend)],
              after=["track source"], outputs=[src_blend], reports_progress=False),
        Stage("guides source", ["guides", "--shot", str(src), "--blend", str(src_blend),
                                "--size", str(size)],
              after=["build source"], reads=[src_blend], outputs=[src / f"guides_{size}"]),
        Stage("dataset source", ["dataset", "--shot", str(src), "--size", str(size)],
              after=["guides source"], outputs=[src / f"dataset_{size}"]),
        Stage("build plate", ["build", "--shot", str(plate), "--blend", str(plate_blend)],
              after=["track plate"], outputs=[plate_blend], reports_progress=False),
        Stage("transfer", ["transfer", "--source", str(src), "--blend", str(plate_blend)],
              after=["build plate", "track source"], outputs=[plate_blend],
              reports_progress=False),
        Stage("guides plate", ["guides", "--shot", str(plate), "--blend", str(plate_blend),
                               "--size", str(size), "--shape-key", SOURCE_VARIANT],
              after=["transfer"], reads=[plate_blend], outputs=[plate / f"guides_{size}"]),
        Stage("dataset plate", ["dataset", "--shot", str(plate), "--size", str(size)],
              after=["guides plate"], outputs=[plate / f"dataset_{size}"]),
        Stage("train", ["train", "--source", str(src), "--target", str(plate), "--run",
                        str(run), "--profile", options.profile, *length, "--resume"],
              after=["dataset source", "dataset plate"], outputs=[run / "checkpoint.json"]),
        Stage("swap", ["swap", "--run", str(run), "--target", str(plate)],
              after=["train"], reads=[run / "checkpoint.json"], outputs=[swapped]),
        Stage("merge", ["merge", "--target", str(plate), "--swap", str(swapped),
                        "--color", options.color, "--mouth", options.mouth],
              after=["swap"], outputs=[merged]),
        Stage("composite", ["composite", "--plate-blend", str(plate_blend), "--merge",
                            str(merged), "--blend", str(out / "shot.blend")],
              # The composite .blend too: an artist's edit of it is rendered again.
              after=["merge"], reads=[plate_blend, out / "shot.blend"],
              outputs=[out / "final"]),
        Stage("eval", ["eval", "--target", str(plate), "--swap", f"swap={swapped}",
                       "--source", str(src), "--out", str(out / "eval.json")],
              after=["swap"], outputs=[out / "eval.json"], reports_progress=False),
    ]


def check_inputs(source: Path, target: Path, out: Path) -> None:
    """Refuse, before anything is written, what would lose or mix up a user's work."""
    for role, path in (("source", source), ("target", target)):
        if not path.exists():
            raise FaceGraftError(f"{path}: {role} footage not found")
        probe_video(path)  # names the file when it is not readable footage
    if source.resolve() == target.resolve():
        raise FaceGraftError(f"{source}: the source and the target are the same footage")
    out_resolved = out.resolve()
    for role, path in (("source", source), ("target", target)):
        footage_folder = (path if path.is_dir() else path.parent).resolve()
        if out_resolved == footage_folder or footage_folder in out_resolved.parents:
            raise FaceGraftError(
                f"{out}: inside the {role} footage's folder {footage_folder}; write the run "
                f"somewhere else so nothing is ever written among the footage")
    if out.exists() and any(out.iterdir()) and not (out / STATE_FILE).is_file():
        raise FaceGraftError(f"{out}: exists, is not empty and is not a FaceGraft run; "
                             f"choose another --out")
    state = _read_state(out)
    if state:
        was = (state.get("source_sha256"), state.get("target_sha256"))
        now = (_file_key(source), _file_key(target))
        if was == now[::-1] and was != now:
            raise FaceGraftError(
                f"{out}: this run puts {state.get('source')} onto {state.get('target')}; the "
                f"source and target are swapped on this command line (nothing was changed)")
        if was != now:
            raise FaceGraftError(
                f"{out}: holds the run of {state.get('source')} onto {state.get('target')}; "
                f"use another --out for other footage (nothing was changed)")


def _read_state(out: Path) -> dict:
    try:
        state = json.loads((out / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise FaceGraftError(f"{out / STATE_FILE}: not a run this FaceGraft can continue")
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


def stage_key(stage: Stage, keys: dict[str, str]) -> str:
    parts = [stage.name, stage.argv, [keys.get(name) for name in stage.after],
             [_file_key(path) for path in stage.reads]]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class _Runner:
    """Runs one stage's process, relaying its progress as the whole run's."""

    def __init__(self, progress_mode: str, count: int):
        self.mode = progress_mode
        self.count = count

    def emit(self, **fields) -> None:
        if self.mode == "json":
            print(json.dumps({"stage": "run", **fields}), flush=True)

    def run(self, index: int, stage: Stage) -> None:
        argv = [sys.executable, "-m", "facegraft", *stage.argv]
        if stage.reports_progress:
            argv += ["--progress", self.mode]
        if self.mode == "bar":
            print(f"facegraft run: [{index + 1}/{self.count}] {stage.name}", file=sys.stderr,
                  flush=True)
        process = subprocess.Popen(argv, stdout=subprocess.PIPE if self.mode == "json" else None,
                                   stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        # The stage's messages go on to the user as they come (its progress, in bar mode);
        # its error line is kept to be reported once, as this run's error.
        tail: deque[str] = deque(maxlen=50)
        relay = threading.Thread(target=self._relay_stderr, args=(process, tail), daemon=True)
        relay.start()
        try:
            error = ""
            if self.mode == "json":
                for line in process.stdout:
                    try:
                        message = json.loads(line)
                    except ValueError:
                        continue
                    if message.get("event") == "progress":
                        fraction = (index + float(message.get("fraction", 0))) / self.count
                        self.emit(event="progress", fraction=round(fraction, 4),
                                  done=index, total=self.count, step=stage.name)
                    elif message.get("event") == "error":
                        error = str(message.get("message", ""))
            returncode = process.wait()
            relay.join()
        except BaseException:
            process.terminate()  # the stage removes its temporary files on SIGTERM
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        if returncode != 0:
            reasons = [ln.removeprefix(ERROR_PREFIX) for ln in tail if ln.startswith(ERROR_PREFIX)]
            last = tail[-1] if tail else "no output"
            raise FaceGraftError(error or (reasons[-1] if reasons else
                                           f"stage '{stage.name}' failed ({last})"))

    def _relay_stderr(self, process: subprocess.Popen, tail: deque) -> None:
        for line in process.stderr:
            line = line.rstrip("\n")
            if line.strip():
                tail.append(line)
            if self.mode == "bar" and not line.startswith(ERROR_PREFIX):
                print(line, file=sys.stderr, flush=True)


def run_pipeline(source: Path, target: Path, out: Path, options: RunOptions,
                 progress_mode: str = "bar") -> Path:
    source, target, out = Path(source), Path(target), Path(out)
    if options.profile not in PROFILE_RESOLUTION:
        raise FaceGraftError(f"profile {options.profile!r}: choose one of "
                             f"{sorted(PROFILE_RESOLUTION)}")
    check_inputs(source, target, out)
    out.mkdir(parents=True, exist_ok=True)
    state = _read_state(out) or {
        "format": STATE_FORMAT, "version": STATE_VERSION, "source": str(source.resolve()),
        "target": str(target.resolve()), "source_sha256": _file_key(source),
        "target_sha256": _file_key(target), "stages": {}}

    def save() -> None:
        write_bytes_atomic(out / STATE_FILE, json.dumps(state, indent=1).encode())

    save()
    stages = plan(source, target, out, options)
    runner = _Runner(progress_mode, len(stages) + 1)
    keys: dict[str, str] = {}
    ran: set[str] = set()
    timings: dict[str, float | str] = {}
    for index, stage in enumerate(stages):
        key = stage_key(stage, keys)
        record = state["stages"].get(stage.name, {})
        upstream_ran = any(name in ran for name in stage.after)
        if (record.get("key") == key and not upstream_ran
                and all(path.exists() for path in stage.outputs)):
            keys[stage.name] = key
            timings[stage.name] = "skipped"
            if progress_mode == "bar":
                print(f"facegraft run: [{index + 1}/{len(stages) + 1}] {stage.name}: up to date",
                      file=sys.stderr, flush=True)
            continue
        started = time.perf_counter()
        runner.run(index, stage)
        seconds = round(time.perf_counter() - started, 2)
        if stage.name == "track source":
            _check_source_length(out)
        # The key is taken after the stage, from what it read then (transfer rewrites the
        # .blend it reads; a later stage reading it keys on the result).
        keys[stage.name] = stage_key(stage, keys)
        ran.add(stage.name)
        timings[stage.name] = seconds
        state["stages"][stage.name] = {"key": keys[stage.name], "seconds": seconds,
                                       "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        save()
    runner.emit(event="progress", fraction=round(len(stages) / (len(stages) + 1), 4),
                done=len(stages), total=len(stages) + 1, step="deliver")
    from .deliver import DELIVERABLES, deliver

    deliver_key = hashlib.sha256(json.dumps(sorted(keys.items())).encode()).hexdigest()
    metrics = out / "metrics.json"
    if (state["stages"].get("deliver", {}).get("key") != deliver_key or ran
            or not all((out / name).is_file() for name in DELIVERABLES)):
        started = time.perf_counter()
        metrics = deliver(out, options, state, timings)
        state["stages"]["deliver"] = {"key": deliver_key,
                                      "seconds": round(time.perf_counter() - started, 2)}
        save()
    runner.emit(event="done", output=str(out), metrics=str(metrics))
    return out


def _check_source_length(out: Path) -> None:
    from ..common.track_file import TRACK_FILENAME, load_track

    source = load_track(out / "source" / TRACK_FILENAME)
    faces = int(source.present.sum())
    plate_frames = None
    if (out / "plate" / TRACK_FILENAME).is_file():
        plate_frames = load_track(out / "plate" / TRACK_FILENAME).frame_count
    needed = MIN_SOURCE_FACE_FRAMES if plate_frames is None else min(MIN_SOURCE_FACE_FRAMES,
                                                                     plate_frames)
    if faces < needed:
        raise FaceGraftError(
            f"{source.meta['video']}: only {faces} frames with a face; a source needs at "
            f"least {needed} to learn a face from (are --source and --target swapped?)")
