"""PC2 point caches: per-frame vertex positions that Blender's Mesh Cache modifier plays.

Layout (little endian): the 12-byte signature ``b"POINTCACHE2\\0"``, int32 version (1),
int32 number of points, float32 start frame, float32 sample rate (frames per sample),
int32 number of samples, then float32 x, y, z for every point of every sample.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import FaceGraftError

SIGNATURE = b"POINTCACHE2\0"
HEADER = struct.Struct("<12siiffi")


def write_pc2(path: Path, positions: np.ndarray, start_frame: float = 0.0) -> None:
    """Write (samples, points, 3) positions atomically."""
    positions = np.ascontiguousarray(positions, dtype="<f4")
    samples, points, _ = positions.shape
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            f.write(HEADER.pack(SIGNATURE, 1, points, float(start_frame), 1.0, samples))
            f.write(positions.tobytes())


def read_pc2(path: Path) -> tuple[np.ndarray, float]:
    """(samples, points, 3) positions and the start frame."""
    data = Path(path).read_bytes()
    if len(data) < HEADER.size or data[:12] != SIGNATURE:
        raise FaceGraftError(f"{path}: not a PC2 point cache")
    _, _, points, start, _, samples = HEADER.unpack_from(data)
    body = np.frombuffer(data, "<f4", offset=HEADER.size)
    if body.size != samples * points * 3:
        raise FaceGraftError(f"{path}: truncated PC2 point cache")
    return body.reshape(samples, points, 3), start


def pc2_is_complete(path: Path) -> bool:
    """The header reads and the file holds as many positions as it says."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
            size = Path(path).stat().st_size
    except OSError:
        return False
    if len(head) < HEADER.size or head[:12] != SIGNATURE:
        return False
    _, _, points, _, _, samples = HEADER.unpack(head)
    return size == HEADER.size + samples * points * 12
