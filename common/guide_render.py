"""Guide passes of the face mesh for one frame, rendered in aligned-crop space.

MediaPipe's canonical mesh is closed over the eyes and the mouth: triangles whose three
corners all lie on the inner lip line span the mouth opening (18 of them) and those on an
eye's rim span the eye (14 each). They are labelled "mouth_interior" and "eyes", so the
region pass shows exactly where the mouth is open and the face's alpha is whole.
"""

from __future__ import annotations

import numpy as np

from .camera import Intrinsics, project
from .canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from .crop import apply
from .face_regions import LIPS_INNER, region_vertices
from .guides_file import REGION_LABELS
from .raster import rasterize


class GuideRenderer:
    """Renders normals, UV, depth and regions of the (closed) face mesh at one size."""

    def __init__(self, size: int):
        self.size = size
        mesh = load_canonical_mesh()
        regions = region_vertices(mesh.uvs)
        self.triangles = mesh.triangles.astype(np.int64)
        labels = np.full(len(self.triangles), REGION_LABELS["skin"], np.uint8)
        for name in ("brows", "lips", "eyes"):
            members = np.zeros(NUM_MESH_VERTICES, bool)
            members[regions[name]] = True
            labels[members[self.triangles].all(axis=1)] = REGION_LABELS[name]
        inner_lips = np.zeros(NUM_MESH_VERTICES, bool)
        inner_lips[list(LIPS_INNER)] = True
        labels[inner_lips[self.triangles].all(axis=1)] = REGION_LABELS["mouth_interior"]
        self.triangle_region = labels
        self.uvs = mesh.uvs.astype(np.float32)

    def vertex_normals(self, points: np.ndarray) -> np.ndarray:
        return vertex_normals(points, self.triangles)

    def render(self, camera_points: np.ndarray, crop: np.ndarray, intr: Intrinsics,
               iris: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Guides of one frame from the mesh's camera-space vertices (468, 3) in cm and
        the frame's plate -> crop transform, encoded as stored (see guides_file). ``iris``:
        the ten iris landmarks (camera space, cm) that draw the gaze guide."""
        points = camera_points[:NUM_MESH_VERTICES].astype(np.float64)
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
        out["iris"] = np.zeros((size, size), np.uint8)
        if iris is not None:
            eyes = out["region"] == REGION_LABELS["eyes"]
            discs = iris_discs(apply(crop, project(iris.astype(np.float64), intr)[None])[0],
                               size)
            out["iris"][eyes] = np.round(discs[eyes] * 255).astype(np.uint8)
        return out


def iris_discs(pixels: np.ndarray, size: int) -> np.ndarray:
    """Both irises as anti-aliased discs (R, R) in 0..1 from the ten iris landmarks in
    crop pixels: a centre then four points on the rim, per eye."""
    y, x = np.mgrid[0:size, 0:size] + 0.5
    out = np.zeros((size, size), np.float32)
    for eye in (pixels[0:5], pixels[5:10]):
        radius = np.linalg.norm(eye[1:] - eye[0], axis=1).mean()
        distance = np.hypot(x - eye[0, 0], y - eye[0, 1])
        out = np.maximum(out, np.clip(radius - distance + 0.5, 0, 1))
    return out


def vertex_normals(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals of a mesh (V, 3)."""
    a, b, c = (points[triangles[:, i]] for i in range(3))
    face_normals = np.cross(b - a, c - a)  # length = twice the area: area weighting
    normals = np.zeros_like(points)
    for i in range(3):
        np.add.at(normals, triangles[:, i], face_normals)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def decode_normals(encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(np.float32) / 127.5 - 1


def decode_uv(encoded: np.ndarray) -> np.ndarray:
    return encoded.astype(np.float32) / 65535
