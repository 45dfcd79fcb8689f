"""Composite: the saved .blend renders the final frames itself, its EXR holds the layers a
compositor needs, the face joins an artist's scene without taking it over (their render
settings, compositor nodes and objects stay theirs and stay correct), and the shot folder
can move. Runs on every Blender release the manifest promises (see the Makefile)."""

from __future__ import annotations

import json
import os
import shutil

import bpy  # noqa: E402
import cv2
import numpy as np
import OpenEXR
import pytest
from facegraft.addon import blender_compat as compat
from facegraft.addon.build import CAMERA_NAME
from facegraft.addon.composite_scene import (
    EXR_LAYERS,
    EXR_NODE,
    FACE_SCENE,
    GROUP_NODE,
    MATERIAL_NAME,
    NEURAL_FACE,
    TREE_NAME,
    setup_composite,
)
from facegraft.common.shot_layout import ShotLayout

FRAME = 10


@pytest.fixture(autouse=True, scope="module")
def render_handlers():
    """What the installed extension registers: objects an artist adds after Composite was
    set up are linked into the face scene before each render."""
    from facegraft.addon import composite_scene

    composite_scene.register()
    yield
    composite_scene.unregister()


def _render(scene, frame, path):
    scene.frame_set(frame)
    bpy.ops.render.render(write_still=False)
    bpy.data.images["Render Result"].save_render(str(path), scene=scene)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _merge(fast_run):
    return ShotLayout(fast_run.out).merge("tiny")


def test_saved_blend_renders_the_final_frame_identically(fast_run, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(ShotLayout(fast_run.out).composite_blend),
                             load_ui=False)
    scene = bpy.context.scene
    tree = compat.compositor_tree(scene, create=False)
    assert tree.nodes[GROUP_NODE].node_tree.name == TREE_NAME and EXR_NODE in tree.nodes
    nodes = bpy.data.node_groups[TREE_NAME].nodes
    names = ["Plate", "Matte", "Occlusion", "Matte Erode", "Edge Blend", "Face Grade",
             "Face Over Plate", "Render Over Face"]
    for name in names + (["Grain"] if compat.HAS_NOISE_NODES else []):
        assert name in nodes, name
    neural = bpy.data.objects[NEURAL_FACE]
    assert neural.material_slots[0].material.name == MATERIAL_NAME
    assert FACE_SCENE in bpy.data.scenes
    # Relative paths: the shot folder can move.
    assert scene.render.filepath.startswith("//")
    exr = tree.nodes[EXR_NODE]
    assert (exr.directory if compat.BLENDER_5 else exr.base_path).startswith("//")
    last = scene.frame_end
    again = _render(scene, last, tmp_path / "again.png")
    final = cv2.cvtColor(cv2.imread(str(ShotLayout(fast_run.out).final_frame(last))),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(again, final)


def _exr_layers(path):
    """Layer name -> its channels. Blender 5.0 writes a part per layer, 4.x one part; the
    channel names are the same ("plate", "matte.V", "normal.X")."""
    layers: dict = {}
    for part in OpenEXR.File(str(path)).parts:
        for name, channel in part.channels.items():
            layers.setdefault(name.split(".")[0], {})[name] = channel
    return layers


def test_exr_holds_plate_swap_matte_and_guides(fast_run):
    layers = _exr_layers(ShotLayout(fast_run.out).exr_frame(FRAME))
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
    merge_meta = json.loads((_merge(fast_run) / "meta.json").read_text())
    grain = merge_meta["plate_grain"] * 12 ** 0.5 / 2 if compat.HAS_NOISE_NODES else 0
    swap = layers["swap"]["swap"].pixels.astype(np.float32)
    full = matte >= 0.999
    assert full.sum() > 1000
    assert np.abs(final[full, :3] - swap[full, :3]).max() <= grain + 4e-3
    assert "occlusion.V" in layers["occlusion"]


def _card(name, camera, location, size=1.0):
    """A plane parented to the camera: camera space x right, y up, -z forward (metres)."""
    bpy.ops.mesh.primitive_plane_add(size=size)
    card = bpy.context.active_object
    card.name = name
    card.parent = camera
    card.location = location
    return card


def test_an_object_in_front_of_the_face_hides_the_swap(fast_run, tmp_path):
    bpy.ops.wm.open_mainfile(filepath=str(ShotLayout(fast_run.out).composite_blend),
                             load_ui=False)
    scene = bpy.context.scene
    without = _render(scene, FRAME, tmp_path / "without.png")
    # A roto card in front of the face covering the left half of the frame, 20 cm from
    # the camera: it shows what is behind it (the plate).
    card = _card("Card", bpy.data.objects[CAMERA_NAME], (-0.5, 0.0, -0.2))
    card.is_holdout = True
    with_card = _render(scene, FRAME, tmp_path / "with.png")
    plate = _plate_frame(fast_run, FRAME)
    matte = cv2.imread(str(_merge(fast_run) / "matte" / f"matte_{FRAME:06d}.png"), 0)
    width = matte.shape[1]
    face = matte > 200
    left, right = face.copy(), face.copy()
    left[:, width // 2 - 5:] = False
    right[:, :width // 2 + 5] = False
    assert left.sum() > 200 and right.sum() > 200
    diff = np.abs(with_card.astype(int) - plate).max(axis=2)
    diff_before = np.abs(without.astype(int) - plate).max(axis=2)
    assert diff_before[left].mean() > 8  # the swap was there
    assert diff[left].mean() < 3  # the card hides it: the plate shows (codec levels)
    assert np.array_equal(with_card[right], without[right])


def _plate_frame(fast_run, scene_frame):
    capture = cv2.VideoCapture(json.loads(
        (ShotLayout(fast_run.out).pipeline_state).read_text())["plate"])
    for _ in range(scene_frame):
        ok, frame = capture.read()
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def _artists_copy(fast_run, blend):
    """The plate's scene saved elsewhere as an artist would (paths rebased)."""
    bpy.ops.wm.open_mainfile(filepath=str(ShotLayout(fast_run.out).plate.scene), load_ui=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), relative_remap=True)
    return bpy.context.scene


def _artists_scene(scene):
    """What an artist does to the plate scene before compositing: their engine, samples,
    view transform and output, a node of their own in the compositor. (Their engine here
    is Cycles at 16 samples: EEVEE's first frame takes minutes on a machine without a GPU,
    and Workbench renders black inside pytest's process on this machine.)"""
    engine = "CYCLES"
    scene.render.engine = engine
    scene.cycles.samples = 16
    scene.view_settings.view_transform = "AgX"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.filepath = "//renders/beauty_####"
    tree = compat.compositor_tree(scene)
    output = compat.final_output(tree)
    layers = next((n for n in tree.nodes if n.bl_idname == "CompositorNodeRLayers"), None)
    if layers is None:
        layers = tree.nodes.new("CompositorNodeRLayers")
        layers.scene = scene
    mine = tree.nodes.new("CompositorNodeBrightContrast")
    mine.name = "Artist Grade"
    tree.links.new(layers.outputs["Image"], mine.inputs["Image"])
    tree.links.new(mine.outputs["Image"], output)
    return {"engine": engine, "samples": 16, "view": "AgX", "format": "OPEN_EXR",
            "path": "//renders/beauty_####"}


def _emission(colour):
    material = bpy.data.materials.new(f"Artist {colour}")
    material.use_nodes = True
    emission = material.node_tree.nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = colour
    output = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial")
    material.node_tree.links.new(emission.outputs["Emission"], output.inputs["Surface"])
    return material


def test_composite_joins_the_artists_scene(fast_run, tmp_path):
    scene = _artists_copy(fast_run, tmp_path / "artist.blend")
    chosen = _artists_scene(scene)
    camera = bpy.data.objects[CAMERA_NAME]
    front = _card("In Front", camera, (-0.5, 0.0, -0.2))  # left half, 20 cm away
    behind = _card("Behind", camera, (0.0, 0.0, -3.0), size=8.0)  # a wall behind the head
    for card, colour in ((front, (1, 0, 0, 1)), (behind, (0, 0, 1, 1))):
        card.data.materials.append(_emission(colour))
    setup_composite(scene, _merge(fast_run), tmp_path / "exr", tmp_path)
    assert (scene.render.engine, scene.cycles.samples, scene.view_settings.view_transform,
            scene.render.image_settings.file_format, scene.render.filepath) == (
        chosen["engine"], chosen["samples"], chosen["view"], chosen["format"], chosen["path"])
    tree = compat.compositor_tree(scene, create=False)
    assert "Artist Grade" in tree.nodes
    assert tree.nodes[GROUP_NODE].inputs["Image"].links[0].from_node.name == "Artist Grade"
    setup_composite(scene, _merge(fast_run), tmp_path / "exr", tmp_path)  # a rerun
    assert sum(n.name.startswith(GROUP_NODE) for n in tree.nodes) == 1
    scene.frame_set(FRAME)
    bpy.ops.render.render(write_still=False)
    layers = _exr_layers(tmp_path / "exr" / f"facegraft_{FRAME:06d}.exr")
    final = layers["final"]["final"].pixels[..., :3]
    swap = layers["swap"]["swap"].pixels[..., :3]
    matte = _merge_matte(fast_run)
    width = matte.shape[1]
    face = matte > 0.999
    left, right = face.copy(), face.copy()
    left[:, width // 2 - 5:] = False
    right[:, :width // 2 + 5] = False
    red = np.array([1.0, 0.0, 0.0])
    # The cube in front hides the face where it covers it; the wall behind never shows
    # through the face; elsewhere the face is the merged swap (plus the grain).
    assert np.abs(final[left] - red).max(axis=1).mean() < 0.05
    grain = json.loads((_merge(fast_run) / "meta.json").read_text())["plate_grain"] * 2
    assert np.abs(final[right] - swap[right]).max() <= grain + 4e-3


def _merge_matte(fast_run):
    return cv2.imread(str(_merge(fast_run) / "matte" / f"matte_{FRAME:06d}.png"), 0) / 255


def test_a_moved_shot_folder_renders_the_same(fast_run, tmp_path):
    """The shot folder copied elsewhere (beside it, the footage where it was) renders the
    same frame into its own folders; the original is out of reach while it does."""
    moved = fast_run.out.with_name("moved")
    shutil.rmtree(moved, ignore_errors=True)
    shutil.copytree(fast_run.out, moved, symlinks=True)
    away = fast_run.out.with_name("away")
    os.replace(fast_run.out, away)
    try:
        bpy.ops.wm.open_mainfile(filepath=str(ShotLayout(moved).composite_blend),
                                 load_ui=False)
        ShotLayout(moved).exr_frame(FRAME).unlink()
        again = _render(bpy.context.scene, FRAME, tmp_path / "moved.png")
        assert ShotLayout(moved).exr_frame(FRAME).is_file()
    finally:
        os.replace(away, fast_run.out)
        shutil.rmtree(moved)
    final = cv2.cvtColor(cv2.imread(str(ShotLayout(fast_run.out).final_frame(FRAME))),
                         cv2.COLOR_BGR2RGB)
    assert np.array_equal(again, final)


def test_a_plate_whose_video_is_gone_is_not_composited(fast_run, tmp_path):
    """A clip whose file is missing renders black in Blender: the set-up refuses it with
    the video's path and leaves the scene as it was."""
    from facegraft.common.errors import FaceGraftError

    scene = _artists_copy(fast_run, tmp_path / "gone.blend")
    scene.active_clip.filepath = str(tmp_path / "moved_away.mp4")
    with pytest.raises(FaceGraftError, match="moved_away.mp4: the plate's video"):
        setup_composite(scene, _merge(fast_run), tmp_path / "exr", tmp_path)
    assert bpy.data.scenes.get(FACE_SCENE) is None
    tree = compat.compositor_tree(scene, create=False)
    assert tree is None or tree.nodes.get(GROUP_NODE) is None


def test_a_plate_folder_linked_from_elsewhere_composites_over_the_plate(fast_run, tmp_path):
    """A TD links a plate's folder into a shot at another depth: Blender opens the plate's
    scene through the link, but collapsed ".." before the link when it saved the shot's
    .blend, so the clip pointed beside the link and the face was composited over black."""
    from facegraft.addon.composite import composite_shot

    shot = tmp_path / "elsewhere" / "deeper" / "shot"
    shot.mkdir(parents=True)
    layout, original = ShotLayout(shot), ShotLayout(fast_run.out)
    layout.plate.path.symlink_to(original.plate.path.resolve())
    (shot / _merge(fast_run).name).symlink_to(_merge(fast_run).resolve())  # as they are
    composite_shot(shot, "tiny", frames=(FRAME, FRAME), progress_mode="none")
    bpy.ops.wm.open_mainfile(filepath=str(layout.composite_blend), load_ui=False)
    assert os.path.isfile(bpy.path.abspath(bpy.context.scene.active_clip.filepath))
    made, want = (cv2.imread(str(folder.final_frame(FRAME))) for folder in (layout, original))
    assert np.abs(made.astype(int) - want).mean() < 1, "not the original shot's frame"


def test_a_scene_without_a_compositor_composites(fast_run, tmp_path):
    """Blender 5.0 keeps the compositor in a node group a scene may not have."""
    scene = _artists_copy(fast_run, tmp_path / "bare.blend")
    if compat.BLENDER_5:
        scene.compositing_node_group = None
    else:
        scene.use_nodes = False
    setup_composite(scene, _merge(fast_run), tmp_path / "exr", tmp_path)
    assert compat.compositor_tree(scene, create=False).nodes.get(GROUP_NODE) is not None
