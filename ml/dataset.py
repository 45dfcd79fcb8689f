"""``facegraft dataset``: aligned training data of a footage, decoded once (the format is
in ``common/dataset_file.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..common.crop import for_opencv
from ..common.dataset_file import DATASET_FORMAT, DATASET_VERSION, dataset_is_complete
from ..common.errors import FaceGraftError
from ..common.file_checks import arrays_are_complete, json_is_readable
from ..common.frame_parts import (
    chunk_span,
    covering_parts,
    join_arrays,
    part_folder,
    part_is_done,
    remove_parts,
    write_part_meta,
)
from ..common.guides_file import ARRAYS as GUIDE_ARRAYS
from ..common.guides_file import check_resolution, load_guides
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import is_up_to_date, written_folder
from ..common.stage_table import revision
from ..common.track_file import load_track_with_faces
from ..pipeline.video import probe_video, read_frames

CROP_ARRAYS = ("rgb", "mask")  # what the dataset adds to its guides' arrays


def make_dataset(shot: Path, role: str = "plate", size: int = 256, video: Path | None = None,
                 progress_mode: str = "bar", force: bool = False,
                 chunk: tuple[int, int] | None = None) -> Path:
    """The footage's dataset at ``size``; ``chunk``: only those scene frames, as a part the
    run without a chunk joins."""
    footage = ShotLayout(shot).footage(role)
    check_resolution(size)
    track = load_track_with_faces(footage.track)
    guides = load_guides(footage.guides(size))
    if guides.meta["frame_count"] != track.frame_count:
        raise FaceGraftError(f"{guides.folder}: made from another track; run guides again")
    video = Path(video) if video else Path(track.meta["video"])
    info = probe_video(video)
    video_sha = sha256_of(video) if video.is_file() else None
    if video_sha is not None and video_sha != track.meta["video_sha256"]:
        raise FaceGraftError(f"{video}: not the video {footage.track} was tracked from")
    folder = footage.dataset(size)
    key = hashlib.sha256(json.dumps(
        [video_sha, guides.meta.get("inputs_key"), size, DATASET_VERSION, revision("dataset")]
    ).encode()).hexdigest()
    n, start = track.frame_count, int(track.meta["start"])
    chunk, rows = chunk_span(chunk, start, n, footage.track)
    if not force and (is_up_to_date(folder, key, dataset_is_complete) or (
            chunk is not None and part_is_done(folder, chunk, key, _part_is_complete))):
        Progress("dataset", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    parts = None if chunk is not None else covering_parts(folder, key, n, _part_is_complete)
    progress = Progress("dataset", rows[1] - rows[0], progress_mode)
    with written_folder(folder if chunk is None else part_folder(folder, chunk),
                        progress) as partial:
        if parts is not None:
            join_arrays(parts, partial, CROP_ARRAYS)
        else:
            _write_crops(partial, info, guides, rows, size, start, progress)
        if chunk is not None:
            write_part_meta(partial, chunk, rows, key)
        else:
            _finish_dataset(partial, guides, size, n, start, video, video_sha, key)
    if chunk is None:
        remove_parts(folder)
    progress.finish(output=str(folder), frames=rows[1] - rows[0])
    return folder


def _part_is_complete(folder: Path) -> bool:
    return json_is_readable(folder / "meta.json") and arrays_are_complete(folder, CROP_ARRAYS)


def _write_crops(partial: Path, info, guides, rows: tuple[int, int], size: int, start: int,
                 progress: Progress) -> None:
    """The aligned RGB crops and face masks of track ``rows`` (the arrays' first row)."""
    count = rows[1] - rows[0]
    rgb = np.lib.format.open_memmap(partial / "rgb.npy", mode="w+", dtype=np.uint8,
                                    shape=(count, size, size, 3))
    mask = np.lib.format.open_memmap(partial / "mask.npy", mode="w+", dtype=np.uint8,
                                     shape=(count, size, size))
    crops = np.asarray(guides.crops)
    for index, frame in read_frames(info, start + rows[0], start + rows[1]):
        row = index - start
        if guides.present[row]:
            rgb[row - rows[0]] = cv2.warpAffine(frame, for_opencv(crops[row]), (size, size),
                                                flags=cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_CONSTANT)
            mask[row - rows[0]] = np.where(guides.region[row] > 0, 255, 0)
        progress.update(row - rows[0] + 1)
    rgb.flush()
    mask.flush()


def _finish_dataset(partial: Path, guides, size: int, n: int, start: int, video: Path,
                    video_sha: str | None, key: str) -> None:
    """The guide arrays (linked) and meta.json beside the crops."""
    for name in (*GUIDE_ARRAYS, "crops", "present"):
        _link_or_copy(guides.folder / f"{name}.npy", partial / f"{name}.npy")
    (partial / "meta.json").write_text(json.dumps({
        "format": DATASET_FORMAT, "version": DATASET_VERSION, "resolution": size,
        "frame_count": n, "start": start, "video": str(video.resolve()),
        "video_sha256": video_sha, "guides": guides.folder.name, "inputs_key": key,
    }, indent=1))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
