"""``facegraft guides``: render a footage's guide passes with Blender, one process per core.

This half needs no bpy: it prepares the output arrays, starts ``facegraft guides-chunk``
processes (Blender, each opening the footage's scene.blend and rendering a frame range
into the shared arrays; ``addon/guides.py``), relays their progress and renames the
finished folders into place. For the plate it renders, in the same pass, the
source-shaped variant (the "Source Identity" shape key on) when the scene has that key.
Cancelling stops the processes and removes the partial folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ..common.atomic import write_failure
from ..common.child_process import ChildProcess
from ..common.crop import DEFAULT_CROP_WIDTH_CM
from ..common.errors import FaceGraftError
from ..common.frame_parts import (
    chunk_span,
    covering_parts,
    finish_part,
    join_arrays,
    part_folder,
    part_is_done,
    remove_parts,
)
from ..common.guides_file import (
    GUIDE_FILES,
    check_resolution,
    create_partial,
    finish,
    guides_are_complete,
)
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import SOURCE_IDENTITY_KEY, ShotLayout
from ..common.stage_folders import is_up_to_date, partial_folder
from ..common.stage_table import revision
from ..common.track_file import load_track_with_faces

MIN_FRAMES_PER_WORKER = 200


def make_guides(shot: Path, role: str = "plate", size: int = 256, workers: int | None = None,
                progress_mode: str = "bar", force: bool = False,
                chunk: tuple[int, int] | None = None) -> Path:
    """Render the guides of ``role`` at ``size``; returns the own-shape guides folder.
    ``chunk``: only those scene frames, as a part the run without a chunk joins."""
    footage = ShotLayout(shot).footage(role)
    check_resolution(size)
    track = load_track_with_faces(footage.track)
    if not footage.scene.is_file():
        raise FaceGraftError(f"{footage.scene}: no such .blend (run Build Scene first)")
    inputs = {"blend_sha256": sha256_of(footage.scene), "track_sha256": sha256_of(footage.track),
              "size": size, "crop_width_cm": DEFAULT_CROP_WIDTH_CM,
              "revision": revision("guides")}
    variants = [None] + ([SOURCE_IDENTITY_KEY] if role == "plate" else [])
    keys = {v: hashlib.sha256(json.dumps({**inputs, "shape_key": v}, sort_keys=True).encode()
                              ).hexdigest() for v in variants}
    folder = footage.guides(size)
    n, start = track.frame_count, int(track.meta["start"])
    chunk, rows = chunk_span(chunk, start, n, footage.track)
    if not force and (all(is_up_to_date(footage.guides(size, v), keys[v], guides_are_complete)
                          for v in variants) or (chunk is not None and part_is_done(
                              folder, chunk, keys[None], guides_are_complete))):
        Progress("guides", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    meta = {"resolution": size, "frame_count": n, "start": start,
            "crop_width_cm": DEFAULT_CROP_WIDTH_CM}
    progress = Progress("guides", rows[1] - rows[0], progress_mode)
    partials = {}
    try:
        if chunk is None and _join_parts(footage, size, variants, keys, inputs, meta):
            progress.finish(output=str(folder), frames=n, joined=True)
            return folder
        for v in variants:
            target = footage.guides(size, v)
            partials[v] = (create_partial(target, n, size) if chunk is None else
                           create_partial(part_folder(target, chunk), rows[1] - rows[0], size))
        shaped = _render_in_processes(footage.scene, footage.track, partials, size, rows,
                                      workers, progress)
        for variant, partial in partials.items():
            if variant is not None and not shaped:
                shutil.rmtree(partial)  # no transfer yet: only the footage's own shape
            elif chunk is not None:
                finish_part(partial, footage.guides(size, variant), chunk, rows, keys[variant])
            else:
                _finish_whole(partial, footage.guides(size, variant), variant, keys, inputs,
                              meta)
    except BaseException as exc:
        for partial in partials.values():
            shutil.rmtree(partial, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk: name the folder being written
            exc = FaceGraftError(f"{folder}: could not write ({write_failure(exc)})")
        if isinstance(exc, FaceGraftError):
            progress.error(str(exc))
            raise exc from None
        raise
    progress.finish(output=str(folder), frames=rows[1] - rows[0])
    return folder


def _join_parts(footage, size: int, variants: list, keys: dict, inputs: dict,
                meta: dict) -> bool:
    """The guides from the parts of farm chunks, when they cover every row (the
    source-shaped variant too when its parts do: the scene has the key). True if joined."""
    n = meta["frame_count"]
    parts = {v: covering_parts(footage.guides(size, v), keys[v], n, guides_are_complete)
             for v in variants}
    if parts[None] is None:
        return False
    for variant, found in parts.items():
        if found is None:
            continue
        target = footage.guides(size, variant)
        partial = partial_folder(target)
        try:
            join_arrays(found, partial, GUIDE_FILES)
            _finish_whole(partial, target, variant, keys, inputs, meta)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return True


def _finish_whole(partial: Path, target: Path, variant: str | None, keys: dict, inputs: dict,
                  meta: dict) -> None:
    """A whole guides folder into place, with what it was made from; its parts, if any,
    are no longer needed."""
    finish(partial, target, {**meta, "variant": variant or "plate",
                             "inputs": {**inputs, "shape_key": variant},
                             "inputs_key": keys[variant]})
    remove_parts(target)


def _render_in_processes(blend: Path, track: Path, partials: dict, size: int,
                         rows: tuple[int, int], workers: int | None,
                         progress: Progress) -> bool:
    """Run the Blender processes over contiguous ranges of track ``rows`` (the partials'
    first row is ``rows[0]``); True when they also rendered the source-shaped variant (the
    scene has the shape key)."""
    count = rows[1] - rows[0]
    workers = max(1, min(workers or min(2, os.cpu_count() or 1),
                         count // MIN_FRAMES_PER_WORKER))
    bounds = np.linspace(rows[0], rows[1], workers + 1).round().astype(int)
    children = []
    try:
        for i in range(workers):
            argv = [sys.executable, "-m", "facegraft", "guides-chunk", "--blend", str(blend),
                    "--track", str(track), "--partial", str(partials[None]),
                    "--rows", f"{bounds[i]}:{bounds[i + 1]}", "--offset", str(rows[0]),
                    "--size", str(size), "--progress", "json"]
            if SOURCE_IDENTITY_KEY in partials:
                argv += ["--shaped-partial", str(partials[SOURCE_IDENTITY_KEY])]
            children.append(ChildProcess(argv).start())
        return _wait_for_chunks(children, blend, progress)
    finally:
        for child in children:
            child.cancel()


def _wait_for_chunks(children: list[ChildProcess], blend: Path, progress: Progress) -> bool:
    done = [0] * len(children)
    shaped = []
    running = set(range(len(children)))
    while running:
        for i in list(running):
            for event in children[i].poll():
                if event.kind == "progress":
                    done[i] = int(event.data.get("done", 0))
                    progress.update(sum(done))
                elif event.kind == "done":
                    shaped.append(bool(event.data.get("source_shaped")))
                elif event.kind == "exit":
                    running.discard(i)
                    if event.returncode != 0:
                        raise FaceGraftError(f"{blend}: rendering guides failed: "
                                             f"{event.message}")
        if running:
            time.sleep(0.05)
    return bool(shaped) and all(shaped)
