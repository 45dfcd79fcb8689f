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
from ..common.guides_file import ARRAYS as GUIDE_ARRAYS
from ..common.guides_file import check_resolution, load_guides
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import is_up_to_date, written_folder
from ..common.stage_table import revision
from ..common.track_file import load_track_with_faces
from ..pipeline.video import probe_video, read_frames


def make_dataset(shot: Path, role: str = "plate", size: int = 256, video: Path | None = None,
                 progress_mode: str = "bar", force: bool = False) -> Path:
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
    if not force and is_up_to_date(folder, key, dataset_is_complete):
        Progress("dataset", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder

    n = track.frame_count
    progress = Progress("dataset", n, progress_mode)
    with written_folder(folder, progress) as partial:
        rgb = np.lib.format.open_memmap(partial / "rgb.npy", mode="w+", dtype=np.uint8,
                                        shape=(n, size, size, 3))
        mask = np.lib.format.open_memmap(partial / "mask.npy", mode="w+", dtype=np.uint8,
                                         shape=(n, size, size))
        start = int(track.meta["start"])
        crops = np.asarray(guides.crops)
        for index, frame in read_frames(info, start, start + n):
            row = index - start
            if guides.present[row]:
                rgb[row] = cv2.warpAffine(frame, for_opencv(crops[row]), (size, size),
                                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                mask[row] = np.where(guides.region[row] > 0, 255, 0)
            progress.update(row + 1)
        rgb.flush()
        mask.flush()
        del rgb, mask
        for name in (*GUIDE_ARRAYS, "crops", "present"):
            _link_or_copy(guides.folder / f"{name}.npy", partial / f"{name}.npy")
        (partial / "meta.json").write_text(json.dumps({
            "format": DATASET_FORMAT, "version": DATASET_VERSION, "resolution": size,
            "frame_count": n, "start": start, "video": str(video.resolve()),
            "video_sha256": video_sha, "guides": guides.folder.name, "inputs_key": key,
        }, indent=1))
    progress.finish(output=str(folder), frames=n)
    return folder


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
