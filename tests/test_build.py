"""Build Scene: the tracked face mesh and camera in a real Blender scene (bpy module)."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from facegraft.addon.build import CAMERA_NAME, FACE_NAME, build_blend
from facegraft.addon.worker import resolve_worker_python, worker_process
from facegraft.common.errors import FaceGraftError
from facegraft.common.point_cache import read_pc2
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import load_track
from mathutils import Vector


@pytest.fixture(scope="module")
def short_shot(franck300_shot) -> Path:
    """The plate's footage folder of franck300_shot."""
    return ShotLayout(franck300_shot).plate.path


def _projected_vertices(scene, frame: int) -> np.ndarray:
    scene.frame_set(frame)
    face = bpy.data.objects[FACE_NAME]
    camera = bpy.data.objects[CAMERA_NAME]
    evaluated = face.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    world = [evaluated.matrix_world @ v.co for v in mesh.vertices]
    evaluated.to_mesh_clear()
    width, height = scene.render.resolution_x, scene.render.resolution_y
    points = [world_to_camera_view(scene, camera, Vector(p)) for p in world]
    return np.array([[p.x * width, (1 - p.y) * height] for p in points])


def test_mesh_lands_on_the_landmarks(short_shot):
    bpy.ops.wm.open_mainfile(filepath=str(short_shot / "scene.blend"))
    scene = bpy.context.scene
    track = load_track(short_shot / "track.npz")
    assert (scene.frame_start, scene.frame_end) == (1, 300)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (360, 288)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(24.0)
    errors = []
    for frame in (1, 2, 77, 150, 299, 300):
        projected = _projected_vertices(scene, frame)
        assert projected.shape == (468, 2)
        errors.append(np.linalg.norm(projected - track.landmarks[frame - 1, :468, :2],
                                     axis=-1).mean())
    print(f"mesh vs landmarks: mean {np.mean(errors):.4f} px, worst frame {np.max(errors):.4f} px")
    assert max(errors) < 1.0


def test_saved_blend_is_complete_and_portable(short_shot):
    bpy.ops.wm.open_mainfile(filepath=str(short_shot / "scene.blend"))
    face = bpy.data.objects[FACE_NAME]
    assert len(face.data.vertices) == 468 and len(face.data.polygons) == 898
    assert face.data.uv_layers.active is not None
    assert {g.name for g in face.vertex_groups} == {"skin", "brows", "eyes", "lips",
                                                     "mouth_interior"}
    assert "jawOpen" in face.keys() and "eyeBlinkLeft" in face.keys()
    # Blendshapes and the head transform are animated.
    paths = {c.data_path for c in _all_fcurves(face)}
    assert {'["jawOpen"]', "location", "rotation_quaternion"} <= paths
    values = [face["jawOpen"] for _ in _frames(bpy.context.scene, (10, 120, 250))]
    assert len(set(np.round(values, 5))) > 1
    cache = bpy.data.objects["FaceGraft Performance"].modifiers["FaceGraft Shape"]
    assert cache.filepath == "//face_shape.pc2" and cache.deform_mode == "OVERWRITE"
    # The point cache holds each frame's tracked shape, in metres.
    shapes, _ = read_pc2(short_shot / "face_shape.pc2")
    track = load_track(short_shot / "track.npz")
    assert shapes.shape == (300, 468, 3)
    assert np.allclose(shapes, track.metric_landmarks[:, :468] * 0.01, atol=1e-6)
    clip = bpy.context.scene.active_clip
    assert clip is not None and clip.frame_duration >= 300
    temp = tempfile.gettempdir()
    for path in (cache.filepath, clip.filepath):
        absolute = bpy.path.abspath(path)
        assert path.startswith("//") or not absolute.startswith(temp), path


def _frames(scene, frames):
    for frame in frames:
        scene.frame_set(frame)
        yield frame


def _all_fcurves(obj):
    action = obj.animation_data.action
    if hasattr(action, "layers") and action.layers:
        bag = action.layers[0].strips[0].channelbag(obj.animation_data.action_slot)
        return list(bag.fcurves)
    return list(action.fcurves)


def test_render_of_the_plate_with_the_mesh(short_shot, artifacts):
    """One frame rendered (Workbench wireframe-free shading, transparent film) and laid over
    the plate, saved for a reviewer."""
    import cv2

    bpy.ops.wm.open_mainfile(filepath=str(short_shot / "scene.blend"))
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.film_transparent = True
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "SINGLE"
    scene.display.shading.single_color = (0.2, 0.6, 1.0)
    scene.frame_set(150)
    out = artifacts / "build_frame150_render.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(out)
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    bpy.ops.render.render(write_still=True)
    render = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert render.shape == (288, 360, 4)
    alpha = render[..., 3:] / 255.0
    assert 0.05 < alpha.mean() < 0.6  # a face, not an empty or full frame
    track = load_track(short_shot / "track.npz")
    cap = cv2.VideoCapture(track.meta["video"])
    cap.set(cv2.CAP_PROP_POS_FRAMES, 149)
    ok, plate = cap.read()
    assert ok
    over = (plate * (1 - 0.5 * alpha) + render[..., :3] * 0.5 * alpha).astype(np.uint8)
    cv2.imwrite(str(artifacts / "build_frame150_over_plate.png"), over)
    # The rendered face covers the tracked face's landmarks.
    inside = [alpha[int(y), int(x), 0] > 0.5 for x, y in track.landmarks[149, :468, :2]
              if 0 <= x < 360 and 0 <= y < 288]
    assert np.mean(inside) > 0.9


def test_full_clip_builds_in_seconds(franck_shot):
    started = time.perf_counter()
    build_blend(franck_shot)
    seconds = time.perf_counter() - started
    print(f"Build Scene, 4800 frames: {seconds:.2f} s")
    assert seconds < 30
    assert bpy.context.scene.frame_end == 4800


def test_track_from_another_video_is_refused(franck300_shot, short_shot, single_face):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in short_shot.iterdir())
    with pytest.raises(FaceGraftError, match="not the video"):
        build_blend(franck300_shot, video=single_face)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in short_shot.iterdir()) == before


def test_missing_worker_python_is_reported():
    with pytest.raises(FaceGraftError, match="worker Python not found"):
        resolve_worker_python("/nonexistent/bin/python3")


def test_crashing_worker_is_reported_and_leaves_nothing(franck, tmp_path):
    job = worker_process(resolve_worker_python(), ["track", str(franck), "--shot", str(tmp_path)])
    job.start()
    deadline = time.time() + 60
    while time.time() < deadline and not any(e.kind == "progress" for e in job.poll()):
        time.sleep(0.05)
    os.kill(job.process.pid, signal.SIGKILL)  # a crash, not a polite cancel
    assert job.wait(timeout=30) == -signal.SIGKILL
    # The exit event comes once the output pipe closes: the crashed worker's tracking
    # processes notice their parent is gone within a few frames and stop too.
    exit_events = []
    deadline = time.time() + 30
    while time.time() < deadline and not exit_events:
        exit_events = [e for e in job.poll() if e.kind == "exit"]
        time.sleep(0.1)
    assert exit_events and "killed by signal 9" in exit_events[0].message
    assert not ShotLayout(tmp_path).plate.track.exists()
