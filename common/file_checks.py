"""Cheap checks that a file FaceGraft wrote is whole: its header and its length, never its
full content. Used to decide whether a stage's output can be trusted (a rerun redoes it
otherwise) and by the panel. Pure Python and NumPy's header reader."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # a PNG's last chunk: a file without it was cut short
EXR_MAGIC = b"\x76\x2f\x31\x01"
BLEND_MAGIC = b"BLENDER"
ZIP_END = b"PK\x05\x06"  # the end of a zip's central directory (npz files are zips)


def _head_and_tail(path: Path, head: int, tail: int) -> tuple[bytes, bytes] | None:
    try:
        with open(path, "rb") as f:
            start = f.read(head)
            size = os.fstat(f.fileno()).st_size
            f.seek(max(size - tail, 0))
            return start, f.read(tail)
    except OSError:
        return None


def png_is_complete(path: Path) -> bool:
    ends = _head_and_tail(path, 8, len(PNG_END))
    return ends is not None and ends[0] == PNG_MAGIC and ends[1] == PNG_END


def exr_is_complete(path: Path) -> bool:
    ends = _head_and_tail(path, 4, 0)
    return ends is not None and ends[0] == EXR_MAGIC and Path(path).stat().st_size > 64


def blend_is_complete(path: Path) -> bool:
    ends = _head_and_tail(path, 7, 0)
    return ends is not None and ends[0] == BLEND_MAGIC and Path(path).stat().st_size > 1024


def npz_is_complete(path: Path) -> bool:
    """A zip whose central directory is where it belongs (at its end)."""
    ends = _head_and_tail(path, 2, 22)
    return ends is not None and ends[0] == b"PK" and ends[1][:4] == ZIP_END


def json_is_readable(path: Path) -> bool:
    try:
        return isinstance(json.loads(Path(path).read_text()), dict)
    except (OSError, ValueError):
        return False


def npy_is_complete(path: Path) -> bool:
    """A .npy file whose header reads and whose length is what the header says."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = np.lib.format._read_array_header(f, version)
            offset = f.tell()
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError, EOFError):
        return False
    return size == offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def arrays_are_complete(folder: Path, names) -> bool:
    return all(npy_is_complete(Path(folder) / f"{name}.npy") for name in names)
