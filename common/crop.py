"""Aligned face crops: one similarity transform per frame, from the smoothed 3D head pose.

Per-frame crops in DeepFaceLab and friends come from a fit to that frame's 2D landmarks,
so their noise becomes crop jitter. Here the crop follows the *filtered* head matrix of
the track: its centre is the projection of a fixed point of the head (midway between the
eyes and the mouth), its size is a fixed physical width at the head's depth, and its roll
keeps the head's left-right axis horizontal. A similarity transform of the image is
exactly a camera roll + shift + zoom, so guides rendered through it are already aligned.

The transform maps plate pixel coordinates to crop pixel coordinates (both with pixel
centres at half-integers, as the track's landmarks): ``crop = A @ [x, y, 1]`` with A a
2x3 matrix ``[[s*cos, s*sin, tx], [-s*sin, s*cos, ty]]``.
"""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics, project, transform_points
from .canonical_mesh import load_canonical_mesh

DEFAULT_CROP_WIDTH_CM = 26.0  # physical width covered by the crop at the head's depth
EYE_CORNERS = (33, 133, 362, 263)
MOUTH = (13, 14)


def face_anchor_cm() -> np.ndarray:
    """The head-space point a crop is centred on: midway between the eyes and the mouth."""
    vertices = load_canonical_mesh().vertices.astype(np.float64)
    eyes = vertices[list(EYE_CORNERS)].mean(axis=0)
    mouth = vertices[list(MOUTH)].mean(axis=0)
    return (eyes + mouth) / 2


def crop_transforms(head_matrix: np.ndarray, intr: Intrinsics, size: int,
                    crop_width_cm: float = DEFAULT_CROP_WIDTH_CM) -> np.ndarray:
    """(N, 2, 3) plate -> crop similarity transforms; NaN where the head matrix is NaN."""
    anchor = face_anchor_cm()
    points = np.stack([anchor, anchor + [1.0, 0.0, 0.0]])  # the anchor and 1 cm to its right
    camera = transform_points(head_matrix.astype(np.float64), points)  # (N, 2, 3)
    pixels = project(camera, intr)  # (N, 2, 2)
    centre = pixels[:, 0]
    right = pixels[:, 1] - centre
    roll = np.arctan2(right[:, 1], right[:, 0])
    depth = -camera[:, 0, 2]
    width_px = intr.focal_px * crop_width_cm / depth
    scale = size / width_px
    cos, sin = scale * np.cos(roll), scale * np.sin(roll)
    out = np.empty((len(head_matrix), 2, 3))
    out[:, 0, 0], out[:, 0, 1] = cos, sin
    out[:, 1, 0], out[:, 1, 1] = -sin, cos
    out[:, :, 2] = size / 2 - np.einsum("nij,nj->ni", out[:, :, :2], centre)
    return out


def invert(transforms: np.ndarray) -> np.ndarray:
    """Inverse similarity transforms (crop -> plate), (N, 2, 3)."""
    linear = np.linalg.inv(transforms[..., :2])
    shift = -np.einsum("...ij,...j->...i", linear, transforms[..., 2])
    return np.concatenate([linear, shift[..., None]], axis=-1)


def apply(transforms: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (..., P, 2) with transforms (..., 2, 3)."""
    linear = np.einsum("...ij,...pj->...pi", transforms[..., :2], points)
    return linear + transforms[..., None, :, 2]


def for_opencv(transform: np.ndarray) -> np.ndarray:
    """The same transform for cv2.warpAffine, whose pixel centres are at integers."""
    out = transform.copy()
    out[..., 2] += 0.5 * (transform[..., 0] + transform[..., 1]) - 0.5
    return out
