"""The Guides stage inside Blender: CG passes of the scene's face mesh, frame by frame, in
crop space (the worker half, ``pipeline/guides.py``, starts these processes).

Each frame reads Blender's *evaluated* face mesh (so shape keys, sculpting and modifiers
count) and the evaluated head and camera transforms, derives the aligned crop from that
smoothed head pose (``common/crop.py``) and rasterizes the guides
(``common/guide_render.py``). Each process opens the same saved .blend and writes its rows
of the shared memory-mapped arrays; with a second partial folder it renders the
source-shaped variant (the "Source Identity" key on) of the same frames too. The crop
always follows the footage's own head pose, so both variants share their crops.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..common.canonical_mesh import NUM_MESH_VERTICES
from ..common.crop import DEFAULT_CROP_WIDTH_CM, crop_transforms
from ..common.errors import FaceGraftError
from ..common.face_regions import LEFT_EYE, RIGHT_EYE
from ..common.guide_render import GuideRenderer
from ..common.guides_file import open_partial_arrays
from ..common.progress import Progress
from ..common.shot_layout import SOURCE_IDENTITY_KEY
from ..common.track_file import load_track
from .build import CAMERA_NAME, FACE_NAME

M_TO_CM = 100.0
# The two iris groups of MediaPipe's landmarks (centre, then four on the rim) and the eye
# rim each sits in: a source-shaped eye moves its iris with it.
IRIS_RIMS = ((slice(NUM_MESH_VERTICES, NUM_MESH_VERTICES + 5), RIGHT_EYE),
             (slice(NUM_MESH_VERTICES + 5, NUM_MESH_VERTICES + 10), LEFT_EYE))


def set_shape_key(face: bpy.types.Object, name: str | None) -> None:
    """Render with shape key ``name`` fully on and every other key off; None renders the
    footage performer's own face (all keys off), whatever the file's slider values."""
    keys = face.data.shape_keys
    if name is not None and (keys is None or name not in keys.key_blocks):
        raise FaceGraftError(f"the face mesh has no shape key '{name}' (run Transfer first)")
    if keys is None:
        return
    for block in keys.key_blocks[1:]:
        block.mute = block.name != name
        if block.name == name:
            block.value = 1.0


def has_shape_key(face: bpy.types.Object, name: str) -> bool:
    keys = face.data.shape_keys
    return keys is not None and name in keys.key_blocks


def _camera_points(face, camera, depsgraph, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated face's vertices in camera space (cm) and the head-to-camera matrix."""
    evaluated = face.evaluated_get(depsgraph)
    evaluated.data.vertices.foreach_get("co", local)
    to_camera = (np.linalg.inv(np.array(camera.evaluated_get(depsgraph).matrix_world))
                 @ np.array(evaluated.matrix_world))
    to_camera[:3, 3] *= M_TO_CM  # rotation stays; positions in cm
    points = local.reshape(-1, 3).astype(np.float64) * M_TO_CM
    return points @ to_camera[:3, :3].T + to_camera[:3, 3], to_camera


def _iris_points(track, row: int, to_camera: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ten tracked iris landmarks in camera space (cm), each eye's moved with its rim
    from the footage's own face to the rendered one (the source's, when shape-keyed)."""
    metric = track.metric_landmarks[row].astype(np.float64)
    own = metric @ to_camera[:3, :3].T + to_camera[:3, 3]
    iris = own[NUM_MESH_VERTICES:NUM_MESH_VERTICES + 10].copy()
    for group, rim in IRIS_RIMS:
        rim = list(rim)
        iris[group.start - NUM_MESH_VERTICES:group.stop - NUM_MESH_VERTICES] += (
            points[rim].mean(axis=0) - own[rim].mean(axis=0))
    return iris


def render_rows(track_path: Path, outputs: dict[str | None, Path], rows: range, size: int,
                report=None, offset: int = 0) -> None:
    """Render guides for track rows ``rows`` of the open .blend into partial folders, one
    per shape key (None: the footage's own shape), whose first row is track row
    ``offset``."""
    track = load_track(track_path)
    scene = bpy.context.scene
    face = bpy.data.objects.get(FACE_NAME)
    camera = bpy.data.objects.get(CAMERA_NAME)
    if face is None or camera is None:
        raise FaceGraftError(f"{bpy.data.filepath}: no FaceGraft scene (run Build Scene first)")
    arrays = {key: open_partial_arrays(folder) for key, folder in outputs.items()}
    renderer = GuideRenderer(size)
    first_frame = int(track.meta["start"]) + 1
    local = np.empty(len(face.data.vertices) * 3, np.float32)
    single = len(arrays) == 1
    if single:  # set once: changing shape keys makes Blender evaluate the mesh again
        set_shape_key(face, next(iter(arrays)))
    for done, row in enumerate(rows, 1):
        if track.present[row]:
            scene.frame_set(first_frame + row)
            crop = None
            for key, target in arrays.items():
                if not single:
                    set_shape_key(face, key)
                points, to_camera = _camera_points(face, camera,
                                                   bpy.context.evaluated_depsgraph_get(), local)
                if crop is None:  # the footage's own head pose decides the crop
                    crop = crop_transforms(to_camera[None], track.intrinsics, size,
                                           DEFAULT_CROP_WIDTH_CM)[0]
                iris = _iris_points(track, row, to_camera, points)
                for name, value in renderer.render(points, crop, track.intrinsics,
                                                   iris).items():
                    target[name][row - offset] = value
                target["crops"][row - offset] = crop
                target["present"][row - offset] = True
        if report is not None:
            report(done)
    for target in arrays.values():
        for array in target.values():
            if isinstance(array, np.memmap):
                array.flush()


def render_chunk(blend: Path, track: Path, partial: Path, rows: str, size: int,
                 shaped_partial: Path | None = None, offset: int = 0,
                 progress_mode: str = "json") -> None:
    """``facegraft guides-chunk``: one process's share, progress as JSON lines. The
    source-shaped variant is rendered when ``shaped_partial`` is given and the face has
    the key; the final "done" line says whether it was."""
    first, _, end = rows.partition(":")
    rows_range = range(int(first), int(end))
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    face = bpy.data.objects.get(FACE_NAME)
    outputs: dict[str | None, Path] = {None: Path(partial)}
    shaped = bool(shaped_partial and face and has_shape_key(face, SOURCE_IDENTITY_KEY))
    if shaped:
        outputs[SOURCE_IDENTITY_KEY] = Path(shaped_partial)
    progress = Progress("guides-chunk", len(rows_range), progress_mode)
    render_rows(track, outputs, rows_range, size, progress.update, offset)
    progress.finish(source_shaped=shaped)
