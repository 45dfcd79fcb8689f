"""``facegraft merge``: the swapped faces back in plate space, colour matched, with a matte
(the folder's format is in ``common/merge_file.py``).

Everything per pixel happens at crop resolution and only the results are warped to the
plate, which keeps the merge far above real time. Colour statistics are smoothed over
time: a per-frame match would make the face flicker with every change of the plate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.crop import for_opencv
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.guides_file import REGION_LABELS, load_guides
from ..common.merge_file import (
    COLOR_MODES,
    MERGE_FORMAT,
    MERGE_VERSION,
    MOUTH_MODES,
    frame_path,
)
from ..common.profiles import get_profile
from ..common.progress import Progress
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import is_up_to_date, written_folder
from ..common.swap_file import load_swap
from ..common.track_file import load_track
from .video import probe_video, read_frames

# Mostly-empty frames: run-length coding is as fast as the lightest deflate and smaller.
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_RLE]
WRITERS = 2  # PNG encoding releases the GIL: encode on both cores while the next frame warps


@dataclass
class MergeOptions:
    color: str = "meanstd"  # none | mean | meanstd (mean and deviation in Lab) | hist
    erode: float = 0.015  # matte erosion, as a fraction of the crop width
    feather: float = 0.03  # matte feather (blur width), as a fraction of the crop width
    mouth: str = "swap"  # the mouth interior from the swap or from the plate
    color_smoothing_s: float = 0.5  # time constant of the colour statistics

    def check(self) -> None:
        if self.color not in COLOR_MODES:
            raise FaceGraftError(f"colour mode {self.color!r}: choose one of {COLOR_MODES}")
        if self.mouth not in MOUTH_MODES:
            raise FaceGraftError(f"mouth {self.mouth!r}: choose one of {MOUTH_MODES}")
        if not (0 <= self.erode < 0.25 and 0 <= self.feather < 0.25):
            raise FaceGraftError("erode and feather are fractions of the crop width "
                                 "from 0 to 0.25")


def crop_matte(region: np.ndarray, normals: np.ndarray, options: MergeOptions) -> np.ndarray:
    """The float matte of one frame in crop space from its source-shaped guides."""
    size = region.shape[0]
    inside = region > 0
    if options.mouth == "plate":
        inside &= region != REGION_LABELS["mouth_interior"]
    matte = inside.astype(np.float32)
    erode = int(round(options.erode * size))
    if erode > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        matte = cv2.erode(matte, kernel)
    # The surface seen edge-on (the far cheek of a turned head) is where the swap is least
    # reliable and the plate's own silhouette must show: fade with the normal's z.
    facing = normals[..., 2].astype(np.float32) / 127.5 - 1
    matte *= np.clip((facing - 0.1) / 0.25, 0, 1)
    feather = options.feather * size
    if feather > 0:
        matte = cv2.GaussianBlur(matte, (0, 0), sigmaX=feather / 2)
        matte *= inside  # never beyond the mesh
    return matte


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)


def _histogram_lut(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(256,) look-up table mapping the values of ``source`` onto ``target``'s histogram."""
    levels = np.arange(256)
    source_cdf = np.cumsum(np.bincount(source, minlength=256)) / max(len(source), 1)
    target_cdf = np.cumsum(np.bincount(target, minlength=256)) / max(len(target), 1)
    return np.interp(source_cdf, target_cdf, levels)


def color_statistics(swap_rgb: np.ndarray, plate_rgb: np.ndarray, skin: np.ndarray,
                     mode: str) -> np.ndarray | None:
    """One frame's colour transfer parameters in Lab, or None without enough skin.
    mean/meanstd: (2, 2, 3) = [swap, plate] x [mean, std] x L,a,b; hist: (3, 256) LUTs."""
    if skin.sum() < 64:
        return None
    a = _lab(swap_rgb)[skin].astype(np.float32)
    b = _lab(plate_rgb)[skin].astype(np.float32)
    if mode == "hist":
        return np.stack([_histogram_lut(a[:, c].astype(np.int64), b[:, c].astype(np.int64))
                         for c in range(3)])
    return np.array([[a.mean(0), a.std(0)], [b.mean(0), b.std(0)]])


def apply_color(swap_rgb: np.ndarray, params: np.ndarray | None, mode: str) -> np.ndarray:
    if mode == "none" or params is None:
        return swap_rgb
    lab = _lab(swap_rgb).astype(np.float32)
    if mode == "hist":
        out = np.stack([params[c][lab[..., c].astype(np.int64)] for c in range(3)], axis=-1)
    elif mode == "mean":
        out = lab - params[0, 0] + params[1, 0]
    else:
        out = (lab - params[0, 0]) / np.maximum(params[0, 1], 1.0) * params[1, 1] + params[1, 0]
    out = np.clip(out, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB)


def smooth_over_time(params: list[np.ndarray | None], sigma_frames: float) -> list:
    """Gaussian-weighted average of each frame's parameters over its neighbours (frames
    without parameters take their neighbours')."""
    known = [i for i, p in enumerate(params) if p is not None]
    if not known:
        return params
    stack = np.stack([params[i] for i in known])
    times = np.asarray(known, np.float64)
    out = []
    for i in range(len(params)):
        weights = np.exp(-0.5 * ((times - i) / max(sigma_frames, 1e-3)) ** 2)
        if weights.sum() < 1e-6:
            weights = (times == times[np.argmin(np.abs(times - i))]).astype(np.float64)
        out.append(np.tensordot(weights / weights.sum(), stack, axes=1))
    return out


def plate_grain(video: Path, start: int, rows: np.ndarray, crops: np.ndarray,
                region: np.ndarray, samples: int = 8) -> float:
    """The plate's noise level on the face (standard deviation, 0..1 units): the robust
    spread of the fine detail left after a small blur, on a few sampled frames."""
    info = probe_video(video)
    picks = set(rows[np.linspace(0, len(rows) - 1, min(samples, len(rows))).round().astype(int)]
                .tolist())
    sigmas = []
    for index, frame in read_frames(info, start + min(picks), start + max(picks) + 1):
        row = index - start
        if row not in picks:
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        fine = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
        face = cv2.warpAffine((region[row] == REGION_LABELS["skin"]).astype(np.uint8),
                              for_opencv(crops[row]), (info.width, info.height),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        if face.sum() > 64:
            values = fine[face]
            sigmas.append(1.4826 * np.median(np.abs(values - np.median(values))))
    return float(np.median(sigmas)) if sigmas else 0.0


def merge_shot(shot: Path, profile: str = "cpu", color: str = "meanstd", erode: float = 0.015,
               feather: float = 0.03, mouth: str = "swap", progress_mode: str = "bar",
               force: bool = False) -> Path:
    """Merge the shot's swap of ``profile`` into its merge folder; returns the folder."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    return merge(layout, layout.swap(name), layout.merge(name),
                 MergeOptions(color=color, erode=erode, feather=feather, mouth=mouth),
                 progress_mode, force)


def merge(layout: ShotLayout, swap_folder: Path, folder: Path, options: MergeOptions,
          progress_mode: str = "bar", force: bool = False) -> Path:
    options.check()
    track = load_track(layout.plate.track)
    swapped = load_swap(swap_folder)
    size = swapped["meta"]["resolution"]
    guides = load_guides(layout.plate.path / swapped["meta"]["guides"])
    data = load_dataset(layout.plate.dataset(size))
    n = track.frame_count
    if len(swapped["present"]) != n or guides.meta["frame_count"] != n:
        raise FaceGraftError(f"{swap_folder}: made from another track of the plate; "
                             f"run Swap again")
    info = probe_video(Path(data["meta"]["video"]))
    key = hashlib.sha256(json.dumps([
        swapped["meta"].get("inputs_key"), guides.meta.get("inputs_key"), asdict(options),
        MERGE_VERSION]).encode()).hexdigest()
    if not force and is_up_to_date(folder, key):
        Progress("merge", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    started = time.perf_counter()
    rows = np.flatnonzero(swapped["present"])
    if len(rows) == 0:
        raise FaceGraftError(f"{swap_folder}: no swapped frames to merge")
    params = _colour_parameters(swapped, guides, data, rows, options, info.fps)
    grain = plate_grain(info.path, int(track.meta["start"]), rows, np.asarray(guides.crops),
                        guides.region)
    start_frame = int(track.meta["start"]) + 1
    progress = Progress("merge", n, progress_mode)
    with written_folder(folder, progress) as partial:
        _write_frames(partial, swapped, guides, params, options, info, start_frame, progress)
        seconds = time.perf_counter() - started
        (partial / "meta.json").write_text(json.dumps({
            "format": MERGE_FORMAT, "version": MERGE_VERSION, "frame_count": n,
            "first_scene_frame": start_frame, "width": info.width, "height": info.height,
            "swap": swapped["meta"]["model"], "options": asdict(options),
            "plate_grain": grain, "inputs_key": key, "seconds": round(seconds, 3),
            "fps": round(n / seconds, 1),
        }, indent=1))
    progress.finish(output=str(folder), frames=n)
    return folder


def _colour_parameters(swapped: dict, guides, data: dict, rows: np.ndarray,
                       options: MergeOptions, fps: float) -> list:
    """Each frame's colour transfer parameters, measured on the skin, smoothed over time."""
    params: list[np.ndarray | None] = [None] * len(swapped["present"])
    if options.color == "none":
        return params
    for row in rows:
        skin = (np.asarray(guides.region[row]) == REGION_LABELS["skin"]) & (
            np.asarray(data["mask"][row]) > 0)
        params[row] = color_statistics(swapped["rgba"][row, ..., :3], data["rgb"][row], skin,
                                       options.color)
    return smooth_over_time(params, options.color_smoothing_s * fps)


def _plate_space(face: np.ndarray, matte: np.ndarray, crop: np.ndarray, info) -> tuple:
    warp = for_opencv(crop)
    size = (info.width, info.height)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return (cv2.warpAffine(face, warp, size, flags=flags),
            cv2.warpAffine((matte * 255).round().astype(np.uint8), warp, size, flags=flags))


def _write_frames(partial: Path, swapped: dict, guides, params: list, options: MergeOptions,
                  info, start_frame: int, progress: Progress) -> None:
    """Every frame of the swap and matte sequences, PNG encoding on WRITERS threads."""
    blank_rgba = np.zeros((info.height, info.width, 4), np.uint8)
    blank_matte = np.zeros((info.height, info.width), np.uint8)
    crops = np.asarray(guides.crops)
    pending: deque = deque()
    for kind in ("swap", "matte"):
        (partial / kind).mkdir()
    with ThreadPoolExecutor(WRITERS) as writer:
        def write(path: Path, image: np.ndarray) -> None:
            pending.append(writer.submit(_write_png, path, image))
            while len(pending) > 4 * WRITERS:
                pending.popleft().result()  # bounded memory; raises a write's error here

        for row, present in enumerate(swapped["present"]):
            plate_face, plate_matte = blank_rgba, blank_matte
            if present:
                face = np.array(swapped["rgba"][row])
                face[..., :3] = apply_color(face[..., :3], params[row], options.color)
                region = np.asarray(guides.region[row])
                face[..., 3] = np.where(region > 0, face[..., 3], 0)
                matte = crop_matte(region, np.asarray(guides.normals[row]), options)
                plate_face, plate_matte = _plate_space(face, matte, crops[row], info)
            write(frame_path(partial, "swap", start_frame + row),
                  cv2.cvtColor(plate_face, cv2.COLOR_RGBA2BGRA))
            write(frame_path(partial, "matte", start_frame + row), plate_matte)
            progress.update(row + 1)
        while pending:
            pending.popleft().result()


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, PNG_FAST):
        raise FaceGraftError(f"{path}: could not write (disk full or not writable?)")

