"""Composite: the saved .blend renders the final frames itself, its EXR holds the layers a
compositor needs, and the scene behaves like a scene (an object in front of the face
hides the swap)."""

from __future__ import annotations

import json

import bpy  # noqa: E402
import cv2
import numpy as np
import OpenEXR
from facegraft.addon.build import CAMERA_NAME, FACE_NAME
from facegraft.addon.composite import EXR_LAYERS, MATERIAL_NAME, TREE_NAME
from facegraft.common.shot_layout import ShotLayout


def _render(scene, frame, path):
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_saved_blend_renders_the_final_frame_identically(fast_run, tmp_path):
    blend = fast_run.out / "shot.blend"
    bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
    scene = bpy.context.scene
    assert scene.compositing_node_group.name == TREE_NAME
    nodes = scene.compositing_node_group.nodes
    for name in ("Plate", "Render Layers", "Matte", "Matte Erode", "Edge Blend", "Grain",
                 "Face Grade", "Face Over Plate", "EXR Layers"):
        assert name in nodes, name
    face = bpy.data.objects[FACE_NAME]
    assert face.data.materials[0].name == MATERIAL_NAME
    # Relative paths: the shot folder can move.
    assert scene.render.filepath.startswith("//")
    last = scene.frame_end
    again = _render(scene, last, tmp_path / "again.png")
    final = cv2.cvtColor(cv2.imread(str(fast_run.out / "final" / f"final_{last:06d}.png")),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(again, final)


def test_exr_holds_plate_swap_matte_and_guides(fast_run):
    exr = OpenEXR.File(str(fast_run.out / "exr" / "facegraft_000010.exr"))
    layers = {part.name(): part.channels for part in exr.parts}
    assert set(EXR_LAYERS) <= set(layers)
    matte = layers["matte"]["matte.V"].pixels
    normal_y = layers["normal"]["normal.Y"].pixels
    depth = layers["depth"]["depth.V"].pixels
    plate = layers["plate"]["plate"].pixels.astype(np.float32)
    final = layers["final"]["final"].pixels.astype(np.float32)
    face = matte > 0.5
    assert face.sum() > 2000
    # Guides in plate space: the face's normals (Blender's world space; the plate camera
    # looks along +Y) point at the camera, its depth is a head's distance (metres).
    assert np.median(-normal_y[face]) > 0.5
    assert 0.2 < np.median(depth[face]) < 3.0
    # The final layer is the plate outside the matte and the face inside.
    outside = matte == 0
    assert np.abs(final[outside, :3] - plate[outside, :3]).max() < 1e-3
    assert np.abs(final[face, :3] - plate[face, :3]).mean() > 0.02
    # Where the matte is full, the final is the merged swap projected through the mesh,
    # pixel for pixel, plus the grain (uniform, at most half its scale either way).
    merge_meta = json.loads((ShotLayout(fast_run.out).merge("tiny") / "meta.json").read_text())
    grain = merge_meta["plate_grain"] * 12 ** 0.5 / 2
    swap = layers["swap"]["swap"].pixels.astype(np.float32)
    full = matte >= 0.999
    assert full.sum() > 1000
    assert np.abs(final[full, :3] - swap[full, :3]).max() <= grain + 4e-3


def test_an_object_in_front_of_the_face_hides_the_swap(fast_run, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(fast_run.out / "shot.blend"), load_ui=False)
    scene = bpy.context.scene
    frame = 10
    scene.frame_set(frame)
    without = _render(scene, frame, tmp_path / "without.png")
    # A card in front of the face covering the left half of the frame, 20 cm from the
    # camera (the camera looks along +Y).
    camera = bpy.data.objects[CAMERA_NAME]
    bpy.ops.mesh.primitive_plane_add(size=1.0)
    card = bpy.context.active_object
    card.parent = camera
    card.location = (-0.5, 0.0, -0.2)  # camera space: left, in front
    card.hide_render = False
    card.visible_camera = True
    card.is_holdout = True  # roto card: shows what is behind it in the plate
    with_card = _render(scene, frame, tmp_path / "with.png")
    plate = _render_plate(scene, frame, tmp_path)
    matte = cv2.imread(str(ShotLayout(fast_run.out).merge("tiny") / "matte" /
                           f"matte_{frame:06d}.png"), cv2.IMREAD_GRAYSCALE)
    width = matte.shape[1]
    face = matte > 200
    left, right = face.copy(), face.copy()
    left[:, width // 2 - 5:] = False
    right[:, :width // 2 + 5] = False
    assert left.sum() > 200 and right.sum() > 200
    diff = np.abs(with_card.astype(int) - plate).max(axis=2)
    diff_before = np.abs(without.astype(int) - plate).max(axis=2)
    assert diff_before[left].mean() > 8  # the swap was there
    assert diff[left].mean() < 1  # the card hides it: the plate shows
    assert np.array_equal(with_card[right], without[right])


def _render_plate(scene, frame, tmp_path):
    """The plate as the compositor reads it (the face mesh hidden)."""
    face = bpy.data.objects[FACE_NAME]
    face.hide_render = True
    animation = face.animation_data
    action = animation.action
    animation.action = None
    try:
        return _render(scene, frame, tmp_path / "plate.png")
    finally:
        animation.action = action
        face.hide_render = False
