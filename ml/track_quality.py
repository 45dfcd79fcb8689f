"""Numbers that say whether a track can be trusted: reprojection, jitter, lag and how
closely it follows fast motion and blinks.

Used by the tests and by the eval stage (jitter).
"""

from __future__ import annotations

import numpy as np

from ..common.canonical_mesh import NUM_MESH_VERTICES
from ..common.head_pose import project_shape
from ..common.track_file import Track


def reprojection_error_px(track: Track, raw: bool = False) -> float:
    """Mean pixel distance between the 2D landmarks and the per-frame 3D landmarks placed
    by the head matrix and projected through the track's camera (0 up to rounding: the
    contract the Blender scene relies on)."""
    suffix = "_raw" if raw else ""
    p = track.present
    matrices = getattr(track, "head_matrix" + suffix)[p].astype(np.float64)
    shapes = getattr(track, "metric_landmarks" + suffix)[p].astype(np.float64)
    observed = getattr(track, "landmarks" + suffix)[p, :, :2]
    return float(np.linalg.norm(project_shape(matrices, shapes, track.intrinsics) - observed,
                                axis=-1).mean())


def rigid_reprojection_error_px(track: Track) -> float:
    """Mean pixel distance between the raw 2D mesh landmarks and the person's neutral
    face shape (median over the shot) placed rigidly by the raw head matrix: how well the
    head pose alone explains the image. What remains is expression (mouth, eyes)."""
    p = track.present
    neutral = np.median(track.metric_landmarks_raw[p, :NUM_MESH_VERTICES], axis=0)
    placed = project_shape(track.head_matrix_raw[p].astype(np.float64), neutral.astype(np.float64),
                           track.intrinsics)
    observed = track.landmarks_raw[p, :NUM_MESH_VERTICES, :2]
    return float(np.linalg.norm(placed - observed, axis=-1).mean())


def jitter_px(landmarks: np.ndarray) -> float:
    """High-frequency motion: mean length of the second difference of 2D landmark
    trajectories (pixels per frame squared), over frame triplets where all are present."""
    accel = np.diff(landmarks[..., :2], n=2, axis=0)
    norms = np.linalg.norm(accel, axis=-1)
    return float(np.nanmean(norms))


def jitter_ratio(track: Track) -> float:
    """Filtered jitter over raw jitter: below 1 means the filter removed jitter."""
    return jitter_px(track.landmarks) / jitter_px(track.landmarks_raw)


def lag_frames(track: Track, fastest_fraction: float = 0.1, max_lag: float = 3.0) -> float:
    """How many frames the filtered face trails the raw one during the fastest motion.

    Takes the face centre (mean of the 2D landmarks) raw and filtered, keeps the frames
    whose raw speed is in the top ``fastest_fraction``, and finds the shift s (a
    fraction of a frame, linear interpolation) minimising |filtered(t) - raw(t - s)| over
    them. Positive s: the filtered track lags; negative: it leads.
    """
    raw = np.nanmean(track.landmarks_raw[..., :2], axis=1)
    filtered = np.nanmean(track.landmarks[..., :2], axis=1)
    t = np.arange(len(raw), dtype=np.float64)
    speed = np.linalg.norm(np.gradient(raw, axis=0), axis=-1)
    margin = int(np.ceil(max_lag)) + 1
    valid = ~np.isnan(speed)
    valid[:margin] = valid[-margin:] = False
    threshold = np.quantile(speed[valid], 1 - fastest_fraction)
    fast = valid & (speed >= threshold)
    shifts = np.arange(-max_lag, max_lag + 1e-9, 0.05)
    costs = []
    for s in shifts:
        shifted = np.stack([np.interp(t - s, t, raw[:, k]) for k in range(2)], axis=-1)
        costs.append(np.nanmean(np.linalg.norm(filtered[fast] - shifted[fast], axis=-1)))
    return float(shifts[int(np.nanargmin(costs))])


def fast_motion_error_px(track: Track, fastest_fraction: float = 0.05) -> float:
    """Mean pixel distance between the filtered and the raw 2D landmarks over the frames
    whose raw face centre moves fastest: a filter that flattens a quick nod or a laugh's
    shake puts the face mesh, and so the swapped face, beside the plate's face there."""
    raw = track.landmarks_raw[..., :2]
    speed = np.linalg.norm(np.gradient(np.nanmean(raw, axis=1), axis=0), axis=-1)
    fast = ~np.isnan(speed)
    fast &= speed >= np.quantile(speed[fast], 1 - fastest_fraction)
    return float(np.linalg.norm(track.landmarks[fast, :, :2] - raw[fast], axis=-1).mean())


def blink_shortfall(track: Track, shut: float = 0.6) -> float:
    """How far the filtered eyeBlink blendshapes fall short of the raw ones where the raw
    say the eye is shut: a filter that rounds off a blink's peak leaves the swap's eye ajar."""
    names = track.meta["blendshape_names"]
    columns = [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]
    raw, filtered = track.blendshapes_raw[:, columns], track.blendshapes[:, columns]
    closed = raw > shut  # NaN (absent frames) compares False
    return float((raw[closed] - filtered[closed]).mean())
