"""The canonical face mesh decoded from the shipped FaceLandmarker bundle."""

import numpy as np
import pytest
from facegraft.common.canonical_mesh import BUNDLE_PATH, load_canonical_mesh, read_bundle_bytes
from facegraft.common.errors import FaceGraftError


def test_mesh_shape_and_ranges():
    mesh = load_canonical_mesh()
    assert mesh.vertices.shape == (468, 3)
    assert mesh.uvs.shape == (468, 2)
    assert mesh.triangles.shape == (898, 3)
    assert mesh.triangles.min() == 0 and mesh.triangles.max() == 467
    assert (mesh.uvs >= 0).all() and (mesh.uvs <= 1).all()
    # A face about 15 cm wide, symmetric about x = 0.
    width = mesh.vertices[:, 0].max() - mesh.vertices[:, 0].min()
    assert 12 < width < 18
    assert abs(mesh.vertices[:, 0].mean()) < 0.05
    # Every vertex is used by a triangle; MediaPipe's pose uses a few dozen landmarks.
    assert len(np.unique(mesh.triangles)) == 468
    assert 20 < (mesh.procrustes_weights > 0).sum() < 100


def test_triangles_face_outwards():
    mesh = load_canonical_mesh()
    v = mesh.vertices[mesh.triangles]
    normals = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    # The face looks down +z in canonical space: most triangles' normals agree.
    assert (normals[:, 2] > 0).mean() > 0.8


def test_bundle_is_verified(tmp_path):
    assert len(read_bundle_bytes()) == BUNDLE_PATH.stat().st_size
    forged = tmp_path / "face_landmarker.task"
    data = bytearray(BUNDLE_PATH.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of a model
    forged.write_bytes(bytes(data))
    with pytest.raises(FaceGraftError, match="not the FaceLandmarker bundle"):
        read_bundle_bytes(forged)
