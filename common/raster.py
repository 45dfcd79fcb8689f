"""A small triangle rasterizer in NumPy: which triangle covers each pixel, and where.

Guides need per-pixel attributes of one 468-vertex face mesh (normals, UVs, depth,
region) at crop resolution for thousands of frames. Blender's render engines spend most
of their time in per-render overhead at this size (Cycles ~22 fps, Workbench ~6.5 fps
measured for 256x256 here, DATA.md), and its ``gpu`` module cannot draw in background
mode. Rasterizing a thousand triangles is a few milliseconds of vectorised NumPy, and
NumPy is in every Blender, so the guides stay in Blender's process, read Blender's
evaluated mesh (shape keys, sculpting, modifiers all count) and come out exactly aligned.

Conventions: pixel (row i, column j) has its centre at x = j + 0.5, y = i + 0.5, the same
as the track's landmark coordinates. Barycentric weights are perspective-correct (the
interpolation a camera makes), given each vertex's view depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Raster:
    triangle: np.ndarray  # (R, R) int32, -1 where no triangle covers the pixel centre
    weights: np.ndarray  # (R, R, 3) float32 perspective-correct barycentric weights
    depth: np.ndarray  # (R, R) float32 view depth, +inf where empty


def rasterize(xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, size: int) -> Raster:
    """Rasterize triangles given vertex pixel positions ``xy`` (V, 2) and positive view
    depths ``depth`` (V,) into a ``size`` x ``size`` image with a depth test."""
    tri_xy = xy[triangles].astype(np.float32)  # (T, 3, 2)
    lo = np.floor(tri_xy.min(axis=1) - 0.5).astype(np.int64) + 1  # first pixel centre >= min
    hi = np.floor(tri_xy.max(axis=1) - 0.5).astype(np.int64)  # last pixel centre <= max
    lo = np.clip(lo, 0, size)
    hi = np.clip(hi, -1, size - 1)
    span = np.maximum(hi - lo + 1, 0)  # (T, 2) pixels in x and y
    counts = span[:, 0] * span[:, 1]
    keep = counts > 0
    if not keep.any():
        return _empty(size)
    tri_index = np.repeat(np.flatnonzero(keep), counts[keep])
    starts = np.repeat(np.cumsum(counts[keep]) - counts[keep], counts[keep])
    offset = np.arange(len(tri_index)) - starts
    width = span[tri_index, 0]
    px = lo[tri_index, 0] + offset % width
    py = lo[tri_index, 1] + offset // width
    cx, cy = (px + 0.5).astype(np.float32), (py + 0.5).astype(np.float32)

    a, b, c = tri_xy[tri_index, 0], tri_xy[tri_index, 1], tri_xy[tri_index, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    w0 = (b[:, 0] - cx) * (c[:, 1] - cy) - (b[:, 1] - cy) * (c[:, 0] - cx)
    w1 = (c[:, 0] - cx) * (a[:, 1] - cy) - (c[:, 1] - cy) * (a[:, 0] - cx)
    with np.errstate(divide="ignore", invalid="ignore"):
        w0, w1 = w0 / area, w1 / area
    w2 = 1 - w0 - w1
    inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (area != 0)
    tri_index, px, py = tri_index[inside], px[inside], py[inside]
    screen = np.stack([w0[inside], w1[inside], w2[inside]], axis=1)

    inv_z = 1.0 / depth[triangles[tri_index]].astype(np.float32)  # (K, 3)
    weighted = screen * inv_z
    total = weighted.sum(axis=1)
    z = 1 / total
    weights = weighted / total[:, None]

    # Depth test. Most pixels are covered by one triangle: only the others need sorting.
    pixel = py * size + px
    hits = np.bincount(pixel, minlength=size * size)
    single = hits[pixel] == 1
    contested = np.flatnonzero(~single)
    order = contested[np.lexsort((z[contested], pixel[contested]))]  # by pixel, nearest first
    first = np.ones(len(order), bool)
    first[1:] = pixel[order[1:]] != pixel[order[:-1]]
    winners = np.concatenate([np.flatnonzero(single), order[first]])

    out = _empty(size)
    out.triangle.reshape(-1)[pixel[winners]] = tri_index[winners]
    out.weights.reshape(-1, 3)[pixel[winners]] = weights[winners]
    out.depth.reshape(-1)[pixel[winners]] = z[winners]
    return out


def _empty(size: int) -> Raster:
    return Raster(np.full((size, size), -1, np.int32), np.zeros((size, size, 3), np.float32),
                  np.full((size, size), np.inf, np.float32))


def interpolate(raster: Raster, triangles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-vertex ``values`` (V, C) interpolated over the raster: (R, R, C), 0 outside."""
    size = raster.triangle.shape[0]
    out = np.zeros((size, size, values.shape[1]), np.float32)
    covered = raster.triangle >= 0
    corners = values[triangles[raster.triangle[covered]]]  # (K, 3, C)
    out[covered] = np.einsum("kv,kvc->kc", raster.weights[covered], corners)
    return out
