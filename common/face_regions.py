"""Semantic regions of the canonical face mesh: skin, brows, eyes, lips, mouth interior.

The contours are MediaPipe's own (``FaceLandmarksConnections``: lips, eyes, eyebrows),
written out as closed loops of landmark indices. A vertex belongs to a region when its
canonical UV lies on or inside that region's loop; UV space is flat, so a 2D
point-in-polygon test is exact there. "mouth_interior" is the inner lip line: the mesh's
triangles spanning the mouth opening have all their corners on it; "eyes" holds each eye's
rim, whose triangles cover the eye.
"""

from __future__ import annotations

import numpy as np

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
              40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81,
              80, 191)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_BROW = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)

# The nose's tip (its hull), which shines as the head turns under a light the albedo does
# not hold; the whole lower nose with its wings and nostrils; and each nasolabial fold, from
# the nose's wing down the cheek past the mouth's corner, where a smile's creases form (a
# laugh lifts them outwards of the neutral fold). The texture has neither the highlight nor
# the creases' and nostrils' sharp edges.
NOSE_TIP = (1, 2, 4, 5, 19, 45, 94, 275)
LOWER_NOSE = (1, 2, 4, 5, 45, 275, 48, 278, 64, 294, 98, 327, 94, 129, 358, 102, 331, 219, 439,
              59, 289, 166, 392)
RIGHT_FOLD = (129, 36, 205, 207, 214, 210)
LEFT_FOLD = (358, 266, 425, 427, 434, 430)

REGION_NAMES = ("skin", "brows", "eyes", "lips", "mouth_interior")
# The inner lips' middles (upper, lower) and the mouth's inner corners.
MOUTH_OPENING = (13, 14, 78, 308)


def mouth_openness(points: np.ndarray) -> np.ndarray:
    """The inner lips' gap over the mouth's width of landmarks (..., P, 2 or 3): a closed
    mouth about 0.01, a vowel 0.1-0.2, a laugh about 0.3."""
    upper, lower, left, right = (points[..., i, :] for i in MOUTH_OPENING)
    width = np.maximum(np.linalg.norm(left - right, axis=-1), 1e-9)
    return np.linalg.norm(upper - lower, axis=-1) / width


def _inside_or_on(points: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon for (P, 2) points against a closed (L, 2) loop."""
    x, y = points[:, 0:1], points[:, 1:2]
    x0, y0 = loop[:, 0], loop[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    inside = np.sum(crosses & (x < x_at), axis=1) % 2 == 1
    return inside


def region_vertices(uvs: np.ndarray) -> dict[str, np.ndarray]:
    """Region name -> sorted vertex indices of the 468-vertex canonical mesh."""
    n = len(uvs)

    def area(*loops: tuple[int, ...]) -> np.ndarray:
        mask = np.zeros(n, bool)
        for loop in loops:
            mask |= _inside_or_on(uvs, uvs[list(loop)])
            mask[list(loop)] = True
        return mask

    lips = area(LIPS_OUTER)
    mouth = np.zeros(n, bool)
    mouth[list(LIPS_INNER)] = True
    eyes = area(LEFT_EYE, RIGHT_EYE)
    brows = area(LEFT_BROW, RIGHT_BROW)
    skin = ~(lips | eyes | brows)
    masks = {"skin": skin, "brows": brows, "eyes": eyes, "lips": lips, "mouth_interior": mouth}
    return {name: np.flatnonzero(masks[name]) for name in REGION_NAMES}
