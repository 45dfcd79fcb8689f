"""The Guides stage: CG passes of the scene's face mesh, frame by frame, in crop space.

Each frame reads Blender's *evaluated* face mesh (so shape keys, sculpting and modifiers
count) and the evaluated head and camera transforms, derives the aligned crop from that
smoothed head pose (``common/crop.py``) and rasterizes the guides
(``common/guide_render.py``). Work is split over processes by frame range: each opens
the same saved .blend and writes its rows of the shared memory-mapped arrays.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy
import numpy as np

from ..common.crop import DEFAULT_CROP_WIDTH_CM, crop_transforms
from ..common.errors import FaceGraftError
from ..common.guide_render import GuideRenderer
from ..common.guides_file import open_partial_arrays
from ..common.track_file import TRACK_FILENAME, load_track
from .scene_build import CAMERA_NAME, FACE_NAME

M_TO_CM = 100.0


def set_shape_key(face: bpy.types.Object, name: str | None) -> None:
    """Render with shape key ``name`` fully on and every other key off; None renders the
    plate performer's own face (all keys off), whatever the file's slider values."""
    keys = face.data.shape_keys
    if name is not None and (keys is None or name not in keys.key_blocks):
        raise FaceGraftError(f"the face mesh has no shape key '{name}' (run transfer first)")
    if keys is None:
        return
    for block in keys.key_blocks[1:]:
        block.mute = block.name != name
        if block.name == name:
            block.value = 1.0


def render_rows(shot: Path, partial: Path, rows: range, size: int, shape_key: str | None,
                crop_width_cm: float = DEFAULT_CROP_WIDTH_CM, report=None) -> None:
    """Render guides for track rows ``rows`` of the open .blend into the partial folder."""
    track = load_track(Path(shot) / TRACK_FILENAME)
    scene = bpy.context.scene
    face = bpy.data.objects.get(FACE_NAME)
    camera = bpy.data.objects.get(CAMERA_NAME)
    if face is None or camera is None:
        raise FaceGraftError(f"{bpy.data.filepath}: no FaceGraft scene (run build first)")
    set_shape_key(face, shape_key)
    arrays = open_partial_arrays(partial)
    renderer = GuideRenderer(size)
    intr = track.intrinsics
    first_frame = int(track.meta["start"]) + 1
    local = np.empty(len(face.data.vertices) * 3, np.float32)
    for done, row in enumerate(rows, 1):
        if track.present[row]:
            scene.frame_set(first_frame + row)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            evaluated = face.evaluated_get(depsgraph)
            evaluated.data.vertices.foreach_get("co", local)
            to_camera = (np.linalg.inv(np.array(camera.evaluated_get(depsgraph).matrix_world))
                         @ np.array(evaluated.matrix_world))
            to_camera[:3, 3] *= M_TO_CM  # rotation stays; positions in cm
            points = local.reshape(-1, 3).astype(np.float64) * M_TO_CM
            points = points @ to_camera[:3, :3].T + to_camera[:3, 3]
            crop = crop_transforms(to_camera[None], intr, size, crop_width_cm)[0]
            frame = renderer.render(points, crop, intr)
            for name, value in frame.items():
                arrays[name][row] = value
            arrays["crops"][row] = crop
            arrays["present"][row] = True
        if report is not None:
            report(done)
    for array in arrays.values():
        if isinstance(array, np.memmap):
            array.flush()


def run_chunk(argv: list[str]) -> int:
    """``facegraft guides-chunk``: one process's share, progress as JSON lines."""
    import argparse

    parser = argparse.ArgumentParser(prog="facegraft guides-chunk")
    parser.add_argument("--blend", type=Path, required=True)
    parser.add_argument("--shot", type=Path, required=True)
    parser.add_argument("--partial", type=Path, required=True)
    parser.add_argument("--rows", required=True, help="FIRST:END")
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--shape-key", default=None)
    parser.add_argument("--crop-width-cm", type=float, default=DEFAULT_CROP_WIDTH_CM)
    args = parser.parse_args(argv)
    first, end = (int(v) for v in args.rows.split(":"))
    bpy.ops.wm.open_mainfile(filepath=str(args.blend), load_ui=False)
    last = [0.0]

    def report(done: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 0.2 or done == end - first:
            last[0] = now
            sys.stdout.write(json.dumps({"done": done}) + "\n")
            sys.stdout.flush()

    render_rows(args.shot, args.partial, range(first, end), args.size, args.shape_key,
                args.crop_width_cm, report)
    return 0
