"""The tracking mask: what MediaPipe must not see of a footage's frames.

An occluder in front of the face (a hand, a microphone, a prop) bends MediaPipe's face mesh
towards its own edges: on the ``occluded`` dev pair the landmarks under the occluders sit
12-29 px off the face and drag the visible ones 2-6 px with them, and the swapped face
follows the mesh. Like a planar tracker's mask, a tracking mask names those pixels; the
track stage fills them from the face around them (OpenCV's inpainting, after widening the
mask a little so the occluder's soft edge goes too) before MediaPipe sees the frame. The
filled skin has no features of its own, so the mesh keeps to what the rest of the face
says (README.md: the track error on the ``occluded`` pair halves).

A mask is a folder of grey images numbered by scene frame (footage frame + 1), white where
the occluders are; a frame without an image has nothing masked. ``facegraft track-mask``
keeps a shot's occlusion matte (the model's, with the artist's corrections) as the plate's
mask in ``SHOT/plate/track_mask/``, which the track stage then reads whoever runs it
(``facegraft run``, the panel, a farm job); ``facegraft track --mask`` takes any such folder
instead (a TD's own roto).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from ..common.errors import FaceGraftError
from ..common.merge_file import load_merge_meta, merge_is_complete
from ..common.profiles import get_profile
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import written_folder
from .video import IMAGE_SUFFIXES, sequence_hash

# The mask is widened by this fraction of the frame's height (9 px at 540) before filling:
# a matte's edge is soft and an occluder's shadow and blur reach past it.
WIDEN = 1 / 60
# The fill is made at this height (pixels) and scaled up: it is smooth skin either way, and
# inpainting costs by the pixel (at 540 high it took 4/5 of the tracking's time).
FILL_HEIGHT = 135
FILL_RADIUS = 2  # pixels at FILL_HEIGHT: the neighbourhood each filled pixel is taken from
_NUMBER = re.compile(r"(\d+)$")


def mask_files(folder: Path) -> dict[int, Path]:
    """The mask's images by scene frame (the number their names end with)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FaceGraftError(f"{folder}: no such mask folder")
    files = {}
    for path in sorted(folder.iterdir()):
        number = _NUMBER.search(path.stem)
        if path.suffix.lower() in IMAGE_SUFFIXES and number:
            files[int(number.group(1))] = path
    if not files:
        raise FaceGraftError(f"{folder}: no numbered mask images (name_<frame>.png, white "
                             f"where the face is hidden)")
    return files


def mask_key(folder: Path) -> str:
    """What a track made with this mask depends on: its images' names, sizes and times."""
    mask_files(folder)  # refuse an empty or missing folder before anything is tracked
    return sequence_hash(Path(folder))


def read_mask(path: Path, width: int, height: int) -> np.ndarray:
    """One mask image as a boolean (height, width) array, True where the face is hidden."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise FaceGraftError(f"{path}: not a readable mask image")
    if image.shape != (height, width):
        raise FaceGraftError(f"{path}: a {image.shape[1]}x{image.shape[0]} mask for "
                             f"{width}x{height} footage")
    return image > (np.iinfo(image.dtype).max // 2 if image.dtype.kind in "ui" else 0.5)


def without_masked(rgb: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``rgb`` with the ``hidden`` pixels (widened) filled from their surroundings."""
    if not hidden.any():
        return rgb
    height = rgb.shape[0]
    size = 2 * round(height * WIDEN / 2) + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    widened = cv2.dilate(hidden.astype(np.uint8), disc)
    scale = min(1.0, FILL_HEIGHT / height)
    small = (round(rgb.shape[1] * scale), round(height * scale))
    fill = cv2.inpaint(cv2.resize(rgb, small, interpolation=cv2.INTER_AREA),
                       (cv2.resize(widened.astype(np.float32), small,
                                   interpolation=cv2.INTER_AREA) > 0).astype(np.uint8),
                       FILL_RADIUS, cv2.INPAINT_TELEA)
    fill = cv2.resize(fill, (rgb.shape[1], height), interpolation=cv2.INTER_LINEAR)
    return np.where(widened[..., None] > 0, fill, rgb)


def keep_occlusion_matte(shot: Path, profile: str = "cpu", force: bool = False) -> Path:
    """Copy the shot's occlusion matte of ``profile`` (the artist's corrected frames
    included) into ``SHOT/plate/track_mask/``; refuse to replace a mask unless ``force``."""
    layout = ShotLayout(shot)
    merge = layout.merge(get_profile(profile).name)
    target = layout.plate.track_mask
    if not merge_is_complete(merge):
        raise FaceGraftError(f"{merge}: no complete merge to take the occlusion matte from "
                             f"(run the merge stage first)")
    if target.exists() and not force:
        raise FaceGraftError(f"{target}: a tracking mask is already there; delete it (or "
                             f"use --force) to replace it with the occlusion matte")
    meta = load_merge_meta(merge)
    with written_folder(target) as partial:
        for path in sorted((merge / "occlusion").glob("occlusion_*.png")):
            shutil.copy2(path, partial / path.name)
    first = int(meta["first_scene_frame"])
    print(f"{target}: the occlusion matte of scene frames {first}-"
          f"{first + int(meta['frame_count']) - 1}; track the plate again to use it")
    return target
