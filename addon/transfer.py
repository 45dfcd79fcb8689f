"""Geometry transfer: the source person's face shape as an editable shape key.

The face mesh's rest shape is the plate performer's neutral face; its Geometry Nodes
modifier adds each frame's tracked deformation on top of it (see ``build``). The
"Source Identity" shape key replaces the rest shape with the source person's neutral face
(the median of their calmest frames' shapes), so with the key on the mesh has the source's
face shape while following the plate's pose and expression.

Only the source's left-right symmetric part is transferred; the key keeps the plate's own
left-right deviation. A tracked face's lopsidedness is mostly how the tracker saw that
footage (man A's neutral in franck.mp4 is 0.73 cm rms from its mirror image, man B's 0.38),
and the plate's pixels follow the plate's: man A's lopsided shape on man B's plate pushed
his face sideways within man B's outline. A source who is the plate's performer gets the
plate's own shape back.
An artist can sculpt the key; guides rendered afterwards follow the edit.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..common.canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from ..common.errors import FaceGraftError
from ..common.file_checks import blend_is_complete
from ..common.head_pose import neutral_shape
from ..common.samples import sha256_of
from ..common.shot_layout import SOURCE_IDENTITY_KEY, ShotLayout
from ..common.track_file import Track, load_track
from .blend_file import save_blend_atomic
from .build import CM_TO_M, FACE_NAME

TRANSFER_KEY = "facegraft_transfer_key"  # scene property: sha256 of the source track used


def neutral_shape_cm(track: Track, where: Path) -> np.ndarray:
    """A person's neutral face from their track, (468, 3) cm (see ``neutral_shape``)."""
    if not track.present.any():
        raise FaceGraftError(f"{where}: the track has no frame with a face")
    return neutral_shape(track.metric_landmarks_raw[:, :NUM_MESH_VERTICES], track.blendshapes_raw,
                         track.meta["blendshape_names"], track.present)


def mirror_vertices() -> np.ndarray:
    """Each mesh vertex's mirror image across the face's middle (an index per vertex): the
    canonical mesh and its UV layout are exactly left-right symmetric."""
    uvs = load_canonical_mesh().uvs[:NUM_MESH_VERTICES]
    mirrored = np.stack([1 - uvs[:, 0], uvs[:, 1]], axis=1)
    return np.argmin(((uvs[None] - mirrored[:, None]) ** 2).sum(axis=2), axis=1)


def symmetric_shape(shape: np.ndarray) -> np.ndarray:
    """``shape`` (468, 3) averaged with its own mirror image (rigidly aligned to it)."""
    mirrored = shape[mirror_vertices()] * np.array([-1.0, 1.0, 1.0])
    return (shape + rigid_align(mirrored, shape)) / 2


def source_shape_on_plate(source: np.ndarray, plate: np.ndarray) -> np.ndarray:
    """(468, 3) cm: the source's symmetric part rigidly aligned to the plate's, plus the
    plate's own left-right deviation (see the module's docstring)."""
    plate_symmetric = symmetric_shape(plate)
    return rigid_align(symmetric_shape(source), plate_symmetric) + (plate - plate_symmetric)


def rigid_align(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """``moving`` rotated and translated (no scale: the face's size is part of its shape)
    onto ``fixed`` in the least-squares sense (Kabsch)."""
    mc, fc = moving.mean(axis=0), fixed.mean(axis=0)
    u, _, vt = np.linalg.svd((moving - mc).T @ (fixed - fc))
    d = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1, 1, d]) @ vt
    return (moving - mc) @ rotation + fc


def transfer_identity(face: bpy.types.Object, source: Track, source_where: Path) -> None:
    rest = np.empty(len(face.data.vertices) * 3, np.float32)
    face.data.vertices.foreach_get("co", rest)
    plate_cm = rest.reshape(-1, 3).astype(np.float64) / CM_TO_M
    aligned = source_shape_on_plate(neutral_shape_cm(source, source_where), plate_cm) * CM_TO_M
    if face.data.shape_keys is None:
        face.shape_key_add(name="Basis", from_mix=False)
    blocks = face.data.shape_keys.key_blocks
    key = (blocks.get(SOURCE_IDENTITY_KEY)
           or face.shape_key_add(name=SOURCE_IDENTITY_KEY, from_mix=False))
    key.data.foreach_set("co", aligned.astype(np.float32).ravel())
    key.value = 1.0
    face.data.update()


def transfer_into_scene(shot: Path) -> None:
    """Geometry transfer in the open file (the panel)."""
    face = bpy.data.objects.get(FACE_NAME)
    if face is None:
        raise FaceGraftError(f"{bpy.data.filepath or 'this file'}: no FaceGraft face "
                             f"(run Build Scene first)")
    track_path = ShotLayout(shot).source.track
    transfer_identity(face, load_track(track_path), track_path)
    bpy.context.scene[TRANSFER_KEY] = sha256_of(track_path)


def transfer_blend(shot: Path) -> Path:
    """Geometry transfer on the plate's scene.blend, saved back atomically (the command
    lines). A key transferred from this same source track is kept as it is (an artist
    may have sculpted it)."""
    layout = ShotLayout(shot)
    blend = layout.plate.scene
    if not blend.is_file():
        raise FaceGraftError(f"{blend}: no such .blend (run Build Scene first)")
    if not blend_is_complete(blend):
        raise FaceGraftError(f"{blend}: damaged, not a .blend; run Build Scene again")
    load_track(layout.source.track)  # refuse before the .blend is opened
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    face = bpy.data.objects.get(FACE_NAME)
    keys = face.data.shape_keys if face else None
    if (keys and SOURCE_IDENTITY_KEY in keys.key_blocks
            and bpy.context.scene.get(TRANSFER_KEY) == sha256_of(layout.source.track)):
        return blend
    transfer_into_scene(shot)
    return save_blend_atomic(blend)
