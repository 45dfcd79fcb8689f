"""Reading footage: a video file or a folder of numbered images, frame by frame.

Every failure to read becomes a FaceGraftError naming the file and the cause.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.errors import FaceGraftError
from ..common.quiet_stderr import quiet_native_stderr

# OpenCV reads EXR only when asked (read when it first decodes one, so setting it here
# before any decoding is enough).
os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr", ".webp"}
DEFAULT_SEQUENCE_FPS = 24.0


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frame_count: int
    fps: float
    width: int
    height: int
    is_sequence: bool


def _sequence_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def sequence_hash(folder: Path) -> str:
    """Identity of a folder of images (an image sequence, a mask): its files' names, sizes
    and modification times, read without opening them."""
    digest = hashlib.sha256()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file():
            stat = entry.stat()
            digest.update(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def read_image(file: Path) -> np.ndarray:
    """One image of a sequence as 8-bit BGR. Scene-linear EXR is shown as Blender's
    Standard view shows it (the sRGB curve, clipped at 1); other formats are read as
    display images (16-bit ones scaled to 8)."""
    try:
        if file.suffix.lower() == ".exr":
            image = cv2.imread(str(file), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
            if image is not None:
                image = _linear_to_srgb8(image)
        else:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise FaceGraftError(f"{file}: not a readable image ({str(exc).strip()[-80:]})"
                             ) from None
    if image is None:
        raise FaceGraftError(f"{file}: not a readable image")
    return image


def _linear_to_srgb8(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    linear = np.clip(np.nan_to_num(image[..., :3].astype(np.float32)), 0.0, 1.0)
    srgb = np.where(linear <= 0.0031308, linear * 12.92,
                    1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return (srgb * 255 + 0.5).astype(np.uint8)


def probe_video(path: Path, sequence_fps: float = DEFAULT_SEQUENCE_FPS) -> VideoInfo:
    """Open the footage once, decode its first frame, and describe it."""
    path = Path(path)
    if not path.exists():
        raise FaceGraftError(f"{path}: no such file")
    if path.is_dir():
        files = _sequence_files(path)
        if not files:
            kinds = ", ".join(sorted(IMAGE_SUFFIXES))
            raise FaceGraftError(f"{path}: folder holds no images ({kinds})")
        first = read_image(files[0])
        return VideoInfo(path, len(files), sequence_fps, first.shape[1], first.shape[0], True)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FaceGraftError(f"{path}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise FaceGraftError(f"{path}: empty file (0 bytes)")
    with quiet_native_stderr():
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            raise FaceGraftError(f"{path}: not a video FFmpeg can decode")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise FaceGraftError(f"{path}: no decodable video frames")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = float(cap.get(cv2.CAP_PROP_FPS))
    finally:
        cap.release()
    if count <= 0:
        raise FaceGraftError(f"{path}: the container does not say how many frames it has")
    if not fps > 0:
        raise FaceGraftError(f"{path}: the container gives no frame rate")
    return VideoInfo(path, count, fps, frame.shape[1], frame.shape[0], False)


def read_frames(info: VideoInfo, start: int, end: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, RGB uint8 image) for frames start .. end-1.

    Stops early, without error, if the video ends before ``end``: containers sometimes
    overstate their frame count. The caller sees how many frames came.
    """
    if info.is_sequence:
        files = _sequence_files(info.path)[start:end]
        for offset, file in enumerate(files):
            image = read_image(file)
            if image.shape[:2] != (info.height, info.width):
                raise FaceGraftError(
                    f"{file}: {image.shape[1]}x{image.shape[0]} differs from the sequence's "
                    f"{info.width}x{info.height}"
                )
            yield start + offset, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return
    cap = cv2.VideoCapture(str(info.path), cv2.CAP_FFMPEG)
    try:
        if start > 0:
            # OpenCV's FFmpeg backend seeks to the keyframe before ``start`` and decodes
            # forward, so the frame that follows is exactly frame ``start``.
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        for index in range(start, end):
            ok, frame = cap.read()
            if not ok:
                return
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
