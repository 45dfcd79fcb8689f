"""The canonical face mesh (468 vertices with UVs, 898 triangles) from the model bundle.

MediaPipe ships the mesh inside ``face_landmarker.task`` (a zip): the member
``geometry_pipeline_metadata_landmarks.binarypb`` is a ``GeometryPipelineMetadata``
protobuf whose ``canonical_mesh`` (a ``Mesh3d``) holds a vertex buffer of 468 x (x, y, z,
u, v) floats in centimetres and an index buffer of 898 x 3 triangle indices. We decode the
few protobuf fields we need by hand so that Blender can read the mesh with no protobuf
package, and the worker gets exactly the same numbers.

Also here: the Procrustes landmark weights of the same file (which landmarks MediaPipe
trusts for the head pose) and the ten iris landmarks (468..477) that the mesh lacks.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FaceGraftError

BUNDLE_PATH = Path(__file__).resolve().parent.parent / "assets" / "face_landmarker.task"
BUNDLE_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
METADATA_MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"

NUM_MESH_VERTICES = 468
NUM_LANDMARKS = 478  # the mesh plus 5 iris landmarks per eye
NUM_TRIANGLES = 898


@dataclass(frozen=True)
class CanonicalMesh:
    vertices: np.ndarray  # (468, 3) float32, centimetres, canonical head space
    uvs: np.ndarray  # (468, 2) float32, texture coordinates (v up, Blender's convention:
    # the forehead near v = 1, the chin near v = 0)
    triangles: np.ndarray  # (898, 3) int32 vertex indices
    procrustes_weights: np.ndarray  # (468,) float32, 0 for landmarks the pose ignores


def read_bundle_bytes(path: Path = BUNDLE_PATH) -> bytes:
    """The model bundle's bytes, refused unless their sha256 is the official bundle's."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FaceGraftError(
            f"{path}: cannot read the FaceLandmarker bundle ({exc.strerror})"
        ) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != BUNDLE_SHA256:
        raise FaceGraftError(
            f"{path}: not the FaceLandmarker bundle FaceGraft ships (sha256 {digest})"
        )
    return data


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """Decode one protobuf message level into (field number, wire type, value)."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def _packed_varints(buf: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def parse_geometry_metadata(data: bytes) -> CanonicalMesh:
    """Decode ``GeometryPipelineMetadata``: field 1 canonical_mesh Mesh3d {1: vertex_type,
    2: primitive_type, 3: float vertex_buffer, 4: uint32 index_buffer}, field 2 repeated
    WeightedLandmarkRef {1: landmark_id, 2: weight}, field 3 input_source. Repeated
    numbers may come packed or one by one; both are accepted."""
    weights = np.zeros(NUM_MESH_VERTICES, np.float32)
    vertex_floats: list[float] = []
    indices: list[int] = []
    for number, wire, value in _fields(data):
        if number == 2 and wire == 2:
            ref = {n: v for n, _, v in _fields(value)}
            weight = struct.unpack("<f", ref.get(2, b"\0\0\0\0"))[0]
            weights[ref.get(1, 0)] = weight
        elif number == 1 and wire == 2:
            for mnumber, mwire, mvalue in _fields(value):
                if mnumber == 3 and mwire == 2:
                    vertex_floats.extend(struct.unpack(f"<{len(mvalue) // 4}f", mvalue))
                elif mnumber == 3 and mwire == 5:
                    vertex_floats.append(struct.unpack("<f", mvalue)[0])
                elif mnumber == 4 and mwire == 2:
                    indices.extend(_packed_varints(mvalue))
                elif mnumber == 4 and mwire == 0:
                    indices.append(mvalue)
    buffer = np.asarray(vertex_floats, np.float32).reshape(-1, 5)
    triangles = np.asarray(indices, np.int32).reshape(-1, 3)
    if buffer.shape[0] != NUM_MESH_VERTICES or triangles.shape[0] != NUM_TRIANGLES:
        raise FaceGraftError(
            f"{METADATA_MEMBER}: expected {NUM_MESH_VERTICES} vertices and {NUM_TRIANGLES} "
            f"triangles, found {buffer.shape[0]} and {triangles.shape[0]}"
        )
    return CanonicalMesh(
        vertices=np.ascontiguousarray(buffer[:, :3]),
        # The bundle counts v downwards (image rows); Blender's UVs count it upwards.
        uvs=np.ascontiguousarray(np.stack([buffer[:, 3], 1 - buffer[:, 4]], axis=1)),
        triangles=triangles,
        procrustes_weights=weights,
    )


@functools.lru_cache(maxsize=1)
def load_canonical_mesh(bundle_path: Path = BUNDLE_PATH) -> CanonicalMesh:
    """The canonical mesh from the (sha256-verified) model bundle."""
    import io

    data = read_bundle_bytes(bundle_path)
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        try:
            metadata = bundle.read(METADATA_MEMBER)
        except KeyError as exc:
            raise FaceGraftError(f"{bundle_path}: no {METADATA_MEMBER} inside") from exc
    return parse_geometry_metadata(metadata)
