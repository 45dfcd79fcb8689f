"""Swapped faces of a target shot: the one module that names and reads the folder.

Format ``facegraft.swap`` version 1: ``<target shot>/swap_<R>_<run name>/`` with
``rgba.npy`` (N, R, R, 4) uint8 (aligned crops: the swapped face and its predicted alpha),
``present.npy`` (N,) bool and ``meta.json`` (run, step, guides used, resolution,
inputs_key). No torch here: the merge and the add-on read it too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .stage_folders import read_meta

SWAP_FORMAT = "facegraft.swap"
SWAP_VERSION = 1


def swap_dir(target: Path, resolution: int, run: Path) -> Path:
    return Path(target) / f"swap_{resolution}_{Path(run).resolve().name}"


def merge_dir(swap_folder: Path) -> Path:
    """Where the merge stage puts a swap folder's faces in plate space (beside it)."""
    swap_folder = Path(swap_folder)
    return swap_folder.with_name(swap_folder.name.replace("swap_", "merge_", 1))


def load_swap(folder: Path) -> dict:
    folder = Path(folder)
    meta = read_meta(folder, SWAP_FORMAT, SWAP_VERSION, "swap")
    return {"rgba": np.load(folder / "rgba.npy", mmap_mode="r"),
            "present": np.load(folder / "present.npy"), "meta": meta}
