"""Guide passes of a shot: one folder per resolution and face shape, the one module that
reads and writes it.

Format ``facegraft.guides`` version 2 (1 had no iris): a folder
``SHOT/<role>/guides_<R>[_<variant>]/`` of NumPy ``.npy`` files, each memory-mappable,
N = frames of the track, R = resolution:

- ``normals.npy`` (N, R, R, 3) uint8: camera-space unit normals (x right, y up, z towards
  the camera), stored as round((n + 1) * 127.5).
- ``uv.npy`` (N, R, R, 2) uint16: canonical UV of the face mesh, stored as uv * 65535.
- ``depth.npy`` (N, R, R) float16: view depth in centimetres, 0 where there is no face.
- ``region.npy`` (N, R, R) uint8: 0 background, then ``REGION_LABELS`` (1 skin, 2 brows,
  3 eyes, 4 lips, 5 mouth interior). The face's alpha is ``region > 0``.
- ``iris.npy`` (N, R, R) uint8: the irises (255 inside) where the eye is open (the eye
  region of the mesh, which closes with the lids): where the footage looks.
- ``crops.npy`` (N, 2, 3) float64: plate -> crop similarity transform of each frame (see
  ``common/crop.py``); NaN where the face is absent.
- ``present.npy`` (N,) bool.
- ``meta.json``: format, version, resolution, frame_count, start, crop_width_cm,
  variant (which shape: "plate" or a shape key's name), inputs (what it was made from).

A folder is written under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FaceGraftError
from .file_checks import arrays_are_complete, json_is_readable
from .stage_folders import load_arrays, partial_folder, read_meta, replace_folder

GUIDES_FORMAT = "facegraft.guides"
GUIDES_VERSION = 2
REGION_LABELS = {"skin": 1, "brows": 2, "eyes": 3, "lips": 4, "mouth_interior": 5}
ARRAYS = {
    "normals": ((3,), np.uint8),
    "uv": ((2,), np.uint16),
    "depth": ((), np.float16),
    "region": ((), np.uint8),
    "iris": ((), np.uint8),
}


GUIDE_FILES = (*ARRAYS, "crops", "present")  # the arrays of a guides folder, row per frame


def check_resolution(size: int) -> None:
    if size % 64 or not 64 <= size <= 1024:
        raise FaceGraftError(f"resolution {size}: must be a multiple of 64 from 64 to 1024")


@dataclass
class Guides:
    folder: Path
    normals: np.ndarray
    uv: np.ndarray
    depth: np.ndarray
    region: np.ndarray
    iris: np.ndarray
    crops: np.ndarray
    present: np.ndarray
    meta: dict

    @property
    def alpha(self) -> np.ndarray:
        return self.region > 0


def create_partial(folder: Path, frames: int, size: int) -> Path:
    """A temporary folder beside ``folder`` holding zero-filled arrays to write into."""
    partial = partial_folder(folder)
    try:
        for name, (channels, dtype) in ARRAYS.items():
            np.lib.format.open_memmap(partial / f"{name}.npy", mode="w+", dtype=dtype,
                                      shape=(frames, size, size, *channels)).flush()
        np.save(partial / "crops.npy", np.full((frames, 2, 3), np.nan))
        np.save(partial / "present.npy", np.zeros(frames, bool))
    except BaseException:  # a full disk: nothing half-made stays
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return partial


def open_partial_arrays(partial: Path) -> dict[str, np.ndarray]:
    """The writable arrays of a partial folder (shared between processes)."""
    return {name: np.load(partial / f"{name}.npy", mmap_mode="r+")
            for name in (*ARRAYS, "crops", "present")}


def finish(partial: Path, folder: Path, meta: dict) -> Path:
    """Write meta.json and rename the partial folder into place (replacing an older one)."""
    meta = dict(meta, format=GUIDES_FORMAT, version=GUIDES_VERSION)
    (partial / "meta.json").write_text(json.dumps(meta, indent=1))
    return replace_folder(partial, folder)


def load_guides(folder: Path) -> Guides:
    """Open a guides folder (arrays memory-mapped, read-only), checking its version."""
    folder = Path(folder)
    meta = read_meta(folder, GUIDES_FORMAT, GUIDES_VERSION, "guides")
    arrays = load_arrays(folder, (*ARRAYS, "crops", "present"), "Guides")
    return Guides(folder=folder, meta=meta, **arrays)


def guides_are_complete(folder: Path) -> bool:
    folder = Path(folder)
    return json_is_readable(folder / "meta.json") and arrays_are_complete(folder, GUIDE_FILES)
