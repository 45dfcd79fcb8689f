"""Training data of a footage: the one module that reads the dataset folder.

Format ``facegraft.dataset`` version 1: a folder ``SHOT/<role>/dataset_<R>/`` holding
``rgb.npy`` (N, R, R, 3) uint8 aligned RGB crops of the footage (black where the crop
leaves the frame), ``mask.npy`` (N, R, R) uint8 (255 on the face: the guides' alpha),
the guide arrays and ``crops.npy``/``present.npy`` of the guides folder it was made from
(hard links where the file system allows, so nothing is stored twice), and ``meta.json``
(format, version, resolution, frame_count, start, video, video_sha256, guides folder,
inputs_key). All arrays are memory-mappable: training never decodes video per sample.
``ml/dataset.py`` writes it.
"""

from __future__ import annotations

from pathlib import Path

from .file_checks import arrays_are_complete, json_is_readable
from .guides_file import ARRAYS as GUIDE_ARRAYS
from .stage_folders import load_arrays, read_meta

DATASET_FORMAT = "facegraft.dataset"
DATASET_VERSION = 1
DATASET_ARRAYS = ("rgb", "mask", *GUIDE_ARRAYS, "crops", "present")


def load_dataset(folder: Path) -> dict:
    """The dataset's arrays (memory-mapped, read-only) and its meta under "meta"."""
    folder = Path(folder)
    meta = read_meta(folder, DATASET_FORMAT, DATASET_VERSION, "dataset")
    out = load_arrays(folder, DATASET_ARRAYS, "Dataset")
    out["meta"] = meta
    return out


def dataset_is_complete(folder: Path) -> bool:
    folder = Path(folder)
    return json_is_readable(folder / "meta.json") and arrays_are_complete(folder, DATASET_ARRAYS)
