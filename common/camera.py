"""The pinhole camera of a track, and projection between camera space and pixels.

Camera space follows OpenGL and Blender: x right, y up, the camera looks down -z, units
are centimetres. Pixels have their origin at the top-left corner of the image, x right,
y down, and pixel centres at half-integers (MediaPipe's normalised coordinates times the
image size).

How the intrinsics are chosen: MediaPipe's geometry pipeline estimates the facial
transformation matrix for a pinhole camera with a 63 degree vertical field of view and the
principal point at the image centre (``PerspectiveCamera`` in the FaceLandmarker graph).
The head matrices are only consistent with that camera, so the track records it: focal
length in pixels = (height / 2) / tan(63 deg / 2). On franck.mp4 this camera reprojects
the canonical mesh onto the landmarks better than any other field of view (3.3 px mean at
63 deg against 5.9 px at 60 deg and 5.2 px at 70 deg, one frame). A plate's real lens is
not observable from a single face track; an artist who knows it can still change the
Blender camera, which then needs the pose refitted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MEDIAPIPE_VERTICAL_FOV_DEG = 63.0


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    focal_px: float
    cx: float
    cy: float

    @property
    def vertical_fov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / 2 / self.focal_px))


def mediapipe_intrinsics(width: int, height: int) -> Intrinsics:
    """The camera MediaPipe's head matrices assume for an image of this size."""
    focal = (height / 2) / math.tan(math.radians(MEDIAPIPE_VERTICAL_FOV_DEG) / 2)
    return Intrinsics(width, height, focal, width / 2, height / 2)


def project(points_cam: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Camera-space points (..., 3) to pixel coordinates (..., 2)."""
    depth = -points_cam[..., 2]
    u = intr.cx + intr.focal_px * points_cam[..., 0] / depth
    v = intr.cy - intr.focal_px * points_cam[..., 1] / depth
    return np.stack([u, v], axis=-1)


def backproject(pixels: np.ndarray, depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Pixels (..., 2) at positive distances ``depth`` (...) along -z to camera space."""
    x = (pixels[..., 0] - intr.cx) / intr.focal_px * depth
    y = -(pixels[..., 1] - intr.cy) / intr.focal_px * depth
    return np.stack([x, y, -depth], axis=-1)


def transform_points(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply 4x4 matrices (..., 4, 4) to points (..., P, 3)."""
    # Written out per component: numpy's batched matmul is slow for 3x3 matrices.
    m = matrices[..., None, :, :]
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack(
        [m[..., i, 0] * x + m[..., i, 1] * y + m[..., i, 2] * z + m[..., i, 3] for i in range(3)],
        axis=-1,
    )
