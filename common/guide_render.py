"""Guide passes of the face mesh for one frame, rendered in aligned-crop space.

The canonical mesh has holes at the eyes and the mouth. For the guides they are closed
with a fan of triangles around each hole (one extra vertex at the hole's centre), labelled
"eyes" and "mouth_interior", so the face's alpha covers the whole face and the network
knows where the mouth opening is. The Blender mesh itself keeps MediaPipe's topology.
"""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics, project
from .canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from .crop import apply
from .face_regions import LEFT_EYE, LIPS_INNER, RIGHT_EYE, region_vertices
from .guides_file import REGION_LABELS
from .raster import rasterize

HOLES = (("mouth_interior", LIPS_INNER), ("eyes", LEFT_EYE), ("eyes", RIGHT_EYE))


class GuideRenderer:
    """Renders normals, UV, depth and regions of the (closed) face mesh at one size."""

    def __init__(self, size: int):
        self.size = size
        mesh = load_canonical_mesh()
        regions = region_vertices(mesh.uvs)
        base = mesh.triangles.astype(np.int64)
        labels = np.full(len(base), REGION_LABELS["skin"], np.uint8)
        for name in ("brows", "lips", "eyes"):
            members = np.zeros(NUM_MESH_VERTICES, bool)
            members[regions[name]] = True
            labels[members[base].all(axis=1)] = REGION_LABELS[name]
        fans, fan_labels, self.loops = [], [], []
        canonical = mesh.vertices.astype(np.float64)
        for k, (name, loop) in enumerate(HOLES):
            centre = NUM_MESH_VERTICES + k
            ring = np.asarray(loop)
            tris = np.stack([ring, np.roll(ring, -1), np.full_like(ring, centre)], axis=1)
            # Wind the fan like the rest of the mesh: facing +z in canonical space.
            points = np.vstack([canonical, [canonical[ring].mean(axis=0)]])
            local = np.where(tris == centre, len(canonical), tris)
            a, b, c = points[local[:, 0]], points[local[:, 1]], points[local[:, 2]]
            if np.cross(b - a, c - a)[:, 2].sum() < 0:
                tris = tris[:, [1, 0, 2]]
            fans.append(tris)
            fan_labels.append(np.full(len(tris), REGION_LABELS[name], np.uint8))
            self.loops.append(ring)
        self.triangles = np.vstack([base, *fans])
        self.triangle_region = np.concatenate([labels, *fan_labels])
        hole_uvs = [mesh.uvs[ring].mean(axis=0) for ring in self.loops]
        self.uvs = np.vstack([mesh.uvs, hole_uvs]).astype(np.float32)

    def closed_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """The 468 mesh vertices plus one at the centre of each hole."""
        centres = [vertices[ring].mean(axis=0) for ring in self.loops]
        return np.vstack([vertices[:NUM_MESH_VERTICES], centres])

    def vertex_normals(self, points: np.ndarray) -> np.ndarray:
        a, b, c = (points[self.triangles[:, i]] for i in range(3))
        face_normals = np.cross(b - a, c - a)  # length = twice the area: area weighting
        normals = np.zeros_like(points)
        for i in range(3):
            np.add.at(normals, self.triangles[:, i], face_normals)
        return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)

    def render(self, camera_points: np.ndarray, crop: np.ndarray,
               intr: Intrinsics) -> dict[str, np.ndarray]:
        """Guides of one frame from the mesh's camera-space vertices (468, 3) in cm and
        the frame's plate -> crop transform, encoded as stored (see guides_file)."""
        points = self.closed_vertices(camera_points.astype(np.float64))
        pixels = apply(crop, project(points, intr)[None])[0]
        raster = rasterize(pixels, -points[:, 2], self.triangles, self.size)
        covered = raster.triangle >= 0
        values = np.hstack([self.vertex_normals(points), self.uvs]).astype(np.float32)
        corners = values[self.triangles[raster.triangle[covered]]]  # (K, 3, 5)
        mixed = np.einsum("kv,kvc->kc", raster.weights[covered], corners)
        normals = mixed[:, :3] / np.maximum(np.linalg.norm(mixed[:, :3], axis=1,
                                                           keepdims=True), 1e-12)
        size = self.size
        out = {
            "normals": np.zeros((size, size, 3), np.uint8),
            "uv": np.zeros((size, size, 2), np.uint16),
            "depth": np.zeros((size, size), np.float16),
            "region": np.zeros((size, size), np.uint8),
        }
        out["normals"][covered] = np.round((normals + 1) * 127.5).astype(np.uint8)
        out["uv"][covered] = np.round(np.clip(mixed[:, 3:5], 0, 1) * 65535).astype(np.uint16)
        out["depth"][covered] = raster.depth[covered]
        out["region"][covered] = self.triangle_region[raster.triangle[covered]]
        return out


def decode_normals(encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(np.float32) / 127.5 - 1


def decode_uv(encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(np.float32) / 65535
