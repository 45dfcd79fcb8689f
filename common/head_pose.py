"""Head pose and per-frame face shape, from MediaPipe landmarks and head matrices.

The head matrix maps the canonical head space (centimetres) to camera space. It is rigid
(MediaPipe's Procrustes solve has no scale), so it splits into a unit quaternion and a
translation, which is what the temporal filter smooths.

The per-frame *metric landmarks* are the face's shape in canonical head space for that
frame, identity and expression included. They are found the way MediaPipe's geometry
pipeline finds its metric mesh: every 2D landmark is unprojected along its camera ray to
a depth given by its relative z (same scale as x, so pixels at the face's distance), and
the result is brought into head space with the inverse head matrix. Placing them with the
head matrix and projecting them gives back the 2D landmarks: the camera, the pose and the
shape of a track agree exactly, which is what the Blender scene needs.
"""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics, backproject, project, transform_points
from .face_regions import mouth_openness

# A neutral face's lips are closed: their gap at most this share of the mouth's width (the
# calmest frames of the sample performers who close their mouths measure 0.010-0.017).
LIPS_CLOSED = 0.03
# Under this deviation of the openness over the frames the mouth barely moves: there is no
# motion to learn how this person's lips close.
STILL_MOUTH = 0.02


def metric_landmarks(
    landmarks_px: np.ndarray, head_matrix: np.ndarray, intr: Intrinsics,
    canonical_vertices: np.ndarray,
) -> np.ndarray:
    """Per-frame face shape in head space, (..., 478, 3) cm.

    ``landmarks_px`` (..., 478, 3): x, y in pixels, z relative depth in pixels (larger is
    farther from the camera). The relative depths are centred so that the mesh's mean
    depth equals the canonical mesh's mean depth under the same pose.
    """
    placed = transform_points(head_matrix, canonical_vertices)  # (..., 468, 3)
    canonical_depth = -placed[..., 2].mean(axis=-1)  # (...)
    head_depth = -head_matrix[..., 2, 3]
    cm_per_px = head_depth / intr.focal_px
    z_px = landmarks_px[..., 2]
    z_centred = z_px - z_px[..., : canonical_vertices.shape[0]].mean(axis=-1, keepdims=True)
    depth = canonical_depth[..., None] + z_centred * cm_per_px[..., None]
    cam = backproject(landmarks_px[..., :2], depth, intr)
    inverse = np.linalg.inv(head_matrix)
    return transform_points(inverse, cam)


def project_shape(head_matrix: np.ndarray, shape: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Place a head-space shape (..., P, 3) with head matrices and project: (..., P, 2)."""
    return project(transform_points(head_matrix, shape), intr)


def matrix_to_quat_trans(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rigid 4x4 matrices (T, 4, 4) to unit quaternions (T, 4; w, x, y, z) and
    translations (T, 3). Consecutive quaternions are kept on the same hemisphere so
    that they can be filtered component-wise."""
    rot = matrices[:, :3, :3].astype(np.float64)
    quats = np.empty((len(rot), 4))
    for i, r in enumerate(rot):
        quats[i] = _rotation_to_quat(r)
    for i in range(1, len(quats)):
        if np.dot(quats[i], quats[i - 1]) < 0:
            quats[i] = -quats[i]
    return quats, matrices[:, :3, 3].astype(np.float64)


def quat_trans_to_matrix(quats: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Inverse of :func:`matrix_to_quat_trans`; quaternions are renormalised first."""
    q = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    w, x, y, z = q.T
    out = np.zeros((len(q), 4, 4))
    out[:, 0, 0] = 1 - 2 * (y * y + z * z)
    out[:, 0, 1] = 2 * (x * y - z * w)
    out[:, 0, 2] = 2 * (x * z + y * w)
    out[:, 1, 0] = 2 * (x * y + z * w)
    out[:, 1, 1] = 1 - 2 * (x * x + z * z)
    out[:, 1, 2] = 2 * (y * z - x * w)
    out[:, 2, 0] = 2 * (x * z - y * w)
    out[:, 2, 1] = 2 * (y * z + x * w)
    out[:, 2, 2] = 1 - 2 * (x * x + y * y)
    out[:, :3, 3] = trans
    out[:, 3, 3] = 1
    return out


def _rotation_to_quat(r: np.ndarray) -> np.ndarray:
    # Shepperd's method: pick the largest diagonal term for numerical stability.
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2 * np.sqrt(trace + 1)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2 * np.sqrt(1 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = 2 * np.sqrt(1 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2 * np.sqrt(1 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def neutral_shape(metric: np.ndarray, blendshapes: np.ndarray, names: list[str],
                  present: np.ndarray, calm_fraction: float = 0.2) -> np.ndarray:
    """A person's neutral face, (P, 3): the per-vertex median shape over the frames with
    the least expression (the lowest ``calm_fraction`` by the sum of their blendshapes,
    gaze and "_neutral" left out), its lips closed (``closed_lips``). A median over all
    frames of a talking or smiling performer has a half-open mouth, which transfers as
    lips that cross when closed; and a performer who talks through the whole shot parts
    his lips even in his calmest frames (on a small face the blendshapes miss it), which
    would transfer as a mouth that opens less than his."""
    counted = np.array([not (n.startswith("eyeLook") or n == "_neutral") for n in names])
    frames = np.flatnonzero(present)
    score = np.nansum(blendshapes[frames][:, counted], axis=1)
    calm = frames[np.argsort(score)[: max(1, int(round(len(frames) * calm_fraction)))]]
    return closed_lips(np.median(metric[calm], axis=0), metric[frames])


def closed_lips(neutral: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """``neutral`` (P, 3) with its lips closed to ``LIPS_CLOSED`` along the motion that
    opens this person's mouth in their ``shapes`` (F, P, 3): each vertex's least-squares
    slope against the mouth's openness, so the jaw and chin follow the lips. Unchanged
    when already closed, or when the mouth barely moves."""
    opening = float(mouth_openness(neutral))
    shapes = shapes[np.isfinite(shapes).all(axis=(1, 2))]
    openness = mouth_openness(shapes)
    if opening <= LIPS_CLOSED or len(shapes) < 2 or openness.std() < STILL_MOUTH:
        return neutral
    spread = openness - openness.mean()
    slope = np.einsum("f,fpc->pc", spread, shapes - shapes.mean(axis=0)) / (spread @ spread)
    # The openness is a distance, not linear in the step: the step that lands nearest.
    steps = np.linspace(0.0, 2 * (opening - LIPS_CLOSED), 201)
    candidates = neutral[None] - steps[:, None, None] * slope[None]
    best = np.argmin(np.abs(mouth_openness(candidates) - LIPS_CLOSED))
    return candidates[best]
