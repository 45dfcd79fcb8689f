"""Swapped faces of a shot's plate: the one module that reads the folder.

Format ``facegraft.swap`` version 2: ``SHOT/swap_<profile>/`` with ``rgba.npy``
(N, R, R, 4) uint8 (aligned crops: the swapped face and its predicted alpha),
``occlusion.npy`` (N, R, R) uint8 (255 where something stands in front of the plate's
face: the larger of the occlusion head's matte and ``ml/plate_consistency.py``'s, what
does not look like the plate's own face, less the head's parts that do),
``present.npy`` (N,) bool and ``meta.json`` (model, step, guides used, resolution,
inputs_key). No torch here: the merge and the add-on read it too.
"""

from __future__ import annotations

from pathlib import Path

from .file_checks import arrays_are_complete, json_is_readable
from .stage_folders import load_arrays, read_meta

SWAP_FORMAT = "facegraft.swap"
SWAP_VERSION = 2
SWAP_ARRAYS = ("rgba", "occlusion", "present")


def load_swap(folder: Path) -> dict:
    folder = Path(folder)
    meta = read_meta(folder, SWAP_FORMAT, SWAP_VERSION, "swap")
    return {**load_arrays(folder, SWAP_ARRAYS, "Swap"), "meta": meta}


def swap_is_complete(folder: Path) -> bool:
    folder = Path(folder)
    return json_is_readable(folder / "meta.json") and arrays_are_complete(folder, SWAP_ARRAYS)
