"""``track.npz``: the face track of one video, the one module that reads and writes it.

Format ``facegraft.track`` version 1, an uncompressed NumPy ``.npz`` (loaded with
``allow_pickle=False``). N is the number of frames tracked (``start`` .. ``start+N-1`` of
the video). Absent frames hold NaN in every float array: nothing is invented.

Arrays (f32 unless said):

- ``landmarks`` (N, 478, 3): filtered; x, y in pixels (top-left origin), z relative depth
  in pixels (larger = farther). ``landmarks_raw``: as MediaPipe gave them.
- ``metric_landmarks`` (N, 478, 3): filtered face shape in canonical head space, cm (see
  ``head_pose``). ``metric_landmarks_raw``: from the raw landmarks and raw head matrix.
- ``head_matrix`` (N, 4, 4): filtered, canonical head space -> camera space (cm, OpenGL
  axes). ``head_matrix_raw``: unfiltered, refitted to the 2D pose landmarks for this
  person's neutral shape. ``head_matrix_mediapipe``: MediaPipe's facial transformation
  matrix as it came.
- ``blendshapes`` (N, 52): filtered, names in ``meta["blendshape_names"]``.
  ``blendshapes_raw``: as MediaPipe gave them.
- ``present`` (N,) bool: a face was found and followed in this frame.
- ``confidence`` (N,): 0..1, exp(-rigid_error / 0.05).
- ``rigid_error`` (N,): mean distance of MediaPipe's pose landmarks from the rigidly placed
  neutral shape (median over the shot), in inter-ocular distances.
- ``meta`` () str: JSON, below.

The filtered landmarks' x, y are exactly the projection of ``head_matrix`` applied to
``metric_landmarks`` through the track's camera, so pose, shape and image agree.

``meta`` keys: ``format`` ("facegraft.track"), ``version`` (1), ``frame_count`` (N),
``start`` (first video frame), ``fps``, ``width``, ``height``, ``focal_px``, ``cx``,
``cy``, ``camera`` (how the intrinsics were chosen), ``video`` (path as given),
``video_sha256``, ``video_bytes``, ``blendshape_names``, ``filter`` (parameters),
``selection`` (how the followed face was chosen), ``inputs_key`` (what a rerun compares),
``created`` (ISO time), ``facegraft_version``.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .camera import Intrinsics
from .errors import FaceGraftError
from .file_checks import npz_is_complete

TRACK_FORMAT = "facegraft.track"
TRACK_VERSION = 1

ARRAYS = (
    "landmarks", "landmarks_raw", "metric_landmarks", "metric_landmarks_raw",
    "head_matrix", "head_matrix_raw", "head_matrix_mediapipe", "blendshapes", "blendshapes_raw",
    "present", "confidence", "rigid_error",
)


@dataclass
class Track:
    landmarks: np.ndarray
    landmarks_raw: np.ndarray
    metric_landmarks: np.ndarray
    metric_landmarks_raw: np.ndarray
    head_matrix: np.ndarray
    head_matrix_raw: np.ndarray
    head_matrix_mediapipe: np.ndarray
    blendshapes: np.ndarray
    blendshapes_raw: np.ndarray
    present: np.ndarray
    confidence: np.ndarray
    rigid_error: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def frame_count(self) -> int:
        return int(self.present.shape[0])

    @property
    def fps(self) -> float:
        return float(self.meta["fps"])

    @property
    def intrinsics(self) -> Intrinsics:
        m = self.meta
        return Intrinsics(int(m["width"]), int(m["height"]), float(m["focal_px"]),
                          float(m["cx"]), float(m["cy"]))


def save_track(track: Track, path: Path) -> None:
    """Write ``track`` to ``path`` atomically."""
    meta = dict(track.meta, format=TRACK_FORMAT, version=TRACK_VERSION,
                frame_count=track.frame_count)
    arrays = {}
    for name in ARRAYS:
        value = getattr(track, name)
        arrays[name] = value.astype(bool if name == "present" else np.float32)
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)


def load_track(path: Path) -> Track:
    """Read a track, refusing other formats and versions with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FaceGraftError(f"{path}: no track file (run Track first)")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != TRACK_FORMAT:
                raise FaceGraftError(
                    f"{path}: not a FaceGraft track (format {meta.get('format')!r})"
                )
            if meta.get("version") != TRACK_VERSION:
                raise FaceGraftError(
                    f"{path}: track format version {meta.get('version')} is not supported "
                    f"(this FaceGraft reads version {TRACK_VERSION}); track the video again"
                )
            arrays = {name: data[name] for name in ARRAYS}
    except FaceGraftError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise FaceGraftError(f"{path}: damaged, not a readable track ({type(exc).__name__}); "
                             f"run Track again, it rewrites it") from exc
    return Track(meta=meta, **arrays)


def load_track_with_faces(path: Path) -> Track:
    """``load_track``, refusing a track in which no frame has a face."""
    track = load_track(path)
    if not track.present.any():
        raise FaceGraftError(f"{path}: no frame with a face")
    return track


def read_track_meta(path: Path) -> dict | None:
    """The metadata of an existing track, or None when there is no readable one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except Exception:  # noqa: BLE001  (any damage: there is no readable track)
        return None
    return meta if isinstance(meta, dict) else None


def track_is_complete(path: Path) -> bool:
    return npz_is_complete(path) and read_track_meta(path) is not None
