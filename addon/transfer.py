"""Geometry transfer: the source person's face shape as an editable shape key.

The face mesh's rest shape is the plate performer's neutral face; its Geometry Nodes
modifier adds each frame's tracked deformation on top of it (see ``scene_build``). The
"Source Identity" shape key replaces the rest shape with the source person's neutral face
(the median of their calmest frames' shapes, rigidly aligned to the plate's neutral), so
with the key on the mesh has the source's face shape while following the plate's pose
and expression.
An artist can sculpt the key; guides rendered afterwards follow the edit.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..common.canonical_mesh import NUM_MESH_VERTICES
from ..common.errors import FaceGraftError
from ..common.head_pose import neutral_shape
from ..common.track_file import TRACK_FILENAME, Track, load_track
from .scene_build import CM_TO_M, FACE_NAME

SHAPE_KEY = "Source Identity"


def neutral_shape_cm(track: Track, where: Path) -> np.ndarray:
    """A person's neutral face from their track, (468, 3) cm (see ``neutral_shape``)."""
    if not track.present.any():
        raise FaceGraftError(f"{where}: the track has no frame with a face")
    return neutral_shape(track.metric_landmarks_raw[:, :NUM_MESH_VERTICES], track.blendshapes_raw,
                         track.meta["blendshape_names"], track.present)


def rigid_align(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``moving`` rotated and translated (no scale: the face's size is part of its shape)
    onto ``fixed`` in the least-squares sense (Kabsch)."""
    mc, fc = moving.mean(axis=0), fixed.mean(axis=0)
    u, _, vt = np.linalg.svd((moving - mc).T @ (fixed - fc))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1, 1, d]) @ vt
    return (moving - mc) @ rotation + fc


def transfer_identity(face: bpy.types.Object, source: Track, source_where: Path) -> None:
    source_cm = neutral_shape_cm(source, source_where)
    rest = np.empty(len(face.data.vertices) * 3, np.float32)
    face.data.vertices.foreach_get("co", rest)
    plate_cm = rest.reshape(-1, 3).astype(np.float64) / CM_TO_M
    aligned = rigid_align(source_cm, plate_cm) * CM_TO_M
    if face.data.shape_keys is None:
        face.shape_key_add(name="Basis", from_mix=False)
    blocks = face.data.shape_keys.key_blocks
    key = blocks.get(SHAPE_KEY) or face.shape_key_add(name=SHAPE_KEY, from_mix=False)
    key.data.foreach_set("co", aligned.astype(np.float32).ravel())
    key.value = 1.0
    face.data.update()


def transfer_into_scene(source_shot: Path) -> None:
    face = bpy.data.objects.get(FACE_NAME)
    if face is None:
        raise FaceGraftError(f"{bpy.data.filepath or 'this file'}: no FaceGraft face (build first)")
    source = load_track(Path(source_shot) / TRACK_FILENAME)
    transfer_identity(face, source, Path(source_shot) / TRACK_FILENAME)
