"""``facegraft guides``: render a shot's guide passes with Blender, one process per core.

This side needs no bpy: it prepares the output arrays, starts ``facegraft guides-chunk``
processes (Blender as a Python module, each opening the shot's .blend and rendering a
frame range into the shared arrays), relays their progress and renames the finished
folder into place. Cancelling stops them and removes the partial folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from ..common.crop import DEFAULT_CROP_WIDTH_CM
from ..common.errors import FaceGraftError
from ..common.guides_file import check_resolution, create_partial, finish, guides_dir
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.stage_folders import is_up_to_date
from ..common.track_file import TRACK_FILENAME, load_track

MIN_FRAMES_PER_WORKER = 200


def _relay(proc: subprocess.Popen, chunk: int, messages: queue.Queue) -> None:
    for line in proc.stdout:
        try:
            messages.put((chunk, json.loads(line)["done"]))
        except (ValueError, KeyError):
            continue
    messages.put((chunk, None))


def make_guides(shot: Path, blend: Path, size: int = 256, shape_key: str | None = None,
                workers: int | None = None, progress_mode: str = "bar", force: bool = False,
                crop_width_cm: float = DEFAULT_CROP_WIDTH_CM) -> Path:
    shot, blend = Path(shot), Path(blend)
    check_resolution(size)
    track = load_track(shot / TRACK_FILENAME)
    if not track.present.any():
        raise FaceGraftError(f"{shot / TRACK_FILENAME}: no frame with a face")
    if not blend.is_file():
        raise FaceGraftError(f"{blend}: no such .blend (run 'facegraft build' first)")
    folder = guides_dir(shot, size, shape_key or "plate")
    inputs = {
        "blend_sha256": sha256_of(blend), "track_sha256": sha256_of(shot / TRACK_FILENAME),
        "size": size, "shape_key": shape_key, "crop_width_cm": crop_width_cm,
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    if not force and is_up_to_date(folder, key):
        Progress("guides", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder

    n = track.frame_count
    workers = max(1, min(workers or min(2, os.cpu_count() or 1), n // MIN_FRAMES_PER_WORKER))
    bounds = np.linspace(0, n, workers + 1).round().astype(int)
    partial = create_partial(folder, n, size)
    progress = Progress("guides", n, progress_mode)
    messages: queue.Queue = queue.Queue()
    procs = []
    try:
        for i in range(workers):
            argv = [sys.executable, "-m", "facegraft", "guides-chunk", "--blend", str(blend),
                    "--shot", str(shot), "--partial", str(partial),
                    "--rows", f"{bounds[i]}:{bounds[i + 1]}", "--size", str(size),
                    "--crop-width-cm", str(crop_width_cm)]
            if shape_key:
                argv += ["--shape-key", shape_key]
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True)
            procs.append(proc)
            threading.Thread(target=_relay, args=(proc, i, messages), daemon=True).start()
        done = [0] * workers
        finished = 0
        while finished < workers:
            chunk, value = messages.get()
            if value is None:
                finished += 1
                code = procs[chunk].wait()
                if code != 0:
                    lines = [ln for ln in procs[chunk].stderr.read().splitlines() if ln.strip()]
                    errors = [ln for ln in lines if "error" in ln.lower()]
                    cause = (errors or lines or [f"exit status {code}"])[-1]
                    raise FaceGraftError(f"{blend}: rendering guides failed: {cause}")
                continue
            done[chunk] = value
            progress.update(sum(done))
        folder = finish(partial, folder, {
            "resolution": size, "frame_count": n, "start": int(track.meta["start"]),
            "crop_width_cm": crop_width_cm, "variant": shape_key or "plate",
            "inputs": inputs, "inputs_key": key, "workers": workers,
        })
    except BaseException as exc:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            proc.wait()
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, FaceGraftError):
            progress.error(str(exc))
        raise
    progress.finish(output=str(folder), frames=n)
    return folder
