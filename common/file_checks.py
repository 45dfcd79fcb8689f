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


# Rows of pixels per chunk for each OpenEXR compression (NONE, RLE, ZIPS, ZIP, PIZ, PXR24,
# B44, B44A, DWAA, DWAB): a single-part file without a chunkCount attribute needs it.
EXR_LINES_PER_CHUNK = (1, 1, 1, 16, 32, 16, 32, 32, 32, 256)
EXR_TILED, EXR_MULTIPART = 0x200, 0x1000


def _exr_headers(data: bytes, multipart: bool) -> tuple[list[dict[str, bytes]], int]:
    """The attributes of each part's header and where the offset tables start."""
    at, parts = 8, []
    while True:
        attributes = {}
        while data[at] != 0:
            name_end = data.index(b"\0", at)
            type_end = data.index(b"\0", name_end + 1)
            size = int.from_bytes(data[type_end + 1:type_end + 5], "little", signed=True)
            attributes[data[at:name_end].decode("latin-1")] = data[type_end + 5:type_end + 5 + size]
            at = type_end + 5 + size
        parts.append(attributes)
        at += 1
        if not multipart:
            return parts, at
        if data[at] == 0:  # an empty header ends a multi-part file's list of headers
            return parts, at + 1


def _exr_chunk_count(attributes: dict[str, bytes]) -> int:
    if "chunkCount" in attributes:
        return int.from_bytes(attributes["chunkCount"], "little", signed=True)
    window = np.frombuffer(attributes["dataWindow"], "<i4")
    lines = EXR_LINES_PER_CHUNK[attributes["compression"][0]]
    return -(-(int(window[3]) - int(window[1]) + 1) // lines)


def exr_is_complete(path: Path) -> bool:
    """OpenEXR writes its chunk offset table as zeros first and fills it in when the file is
    closed: a file cut short has a zero or out-of-range offset, or its last chunk runs past
    the end. Reads the headers, the table and one chunk's prefix, never the pixels."""
    try:
        with open(path, "rb") as f:
            length = os.fstat(f.fileno()).st_size
            head = f.read(1 << 16)
            if head[:4] != EXR_MAGIC:
                return False
            flags = int.from_bytes(head[4:8], "little")
            parts, table = _exr_headers(head, bool(flags & EXR_MULTIPART))
            count = sum(_exr_chunk_count(part) for part in parts)
            f.seek(table)
            offsets = np.frombuffer(f.read(8 * count), "<u8", count)
            if count == 0 or offsets.min() < table + 8 * count or offsets.max() >= length:
                return False
            if flags & EXR_TILED:  # tiled chunks have a longer prefix; the table is enough
                return True
            last = int(offsets.max()) + (4 if flags & EXR_MULTIPART else 0)
            f.seek(last + 4)
            size = int.from_bytes(f.read(4), "little", signed=True)
        return last + 8 + size == length
    except (OSError, ValueError, IndexError, KeyError):
        return False


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
