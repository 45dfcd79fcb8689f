"""Guide passes rendered from the Blender scene: geometry, regions, UVs, bad input."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from facegraft.common.crop import apply, invert
from facegraft.common.guide_render import decode_normals, decode_uv
from facegraft.common.guides_file import REGION_LABELS, load_guides
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.track_file import load_track, save_track


@pytest.fixture(scope="module")
def guides(franck300_guides):
    return load_guides(franck300_guides)


@pytest.fixture(scope="module")
def track(franck300_shot):
    return load_track(ShotLayout(franck300_shot).plate.track)


def _frontal_rows(track, count=10):
    forward = track.head_matrix[:, :3, 2]  # the head's +z axis in camera space
    angle = np.degrees(np.arccos(np.clip(forward[:, 2], -1, 1)))
    angle[~track.present] = np.inf
    return np.argsort(angle)[:count], angle


def test_layout(guides, track):
    size = 256
    assert guides.meta["resolution"] == size and guides.meta["frame_count"] == 300
    assert guides.normals.shape == (300, size, size, 3) and guides.normals.dtype == np.uint8
    assert guides.uv.shape == (300, size, size, 2) and guides.region.shape == (300, size, size)
    assert guides.present.all() == track.present.all()
    coverage = guides.alpha.mean(axis=(1, 2))
    assert (coverage[track.present] > 0.2).all() and (coverage[track.present] < 0.8).all()


def test_normals_face_the_camera(guides, track):
    rows, angle = _frontal_rows(track)
    full, interior = [], []
    for row in rows:
        normals = decode_normals(guides.normals[row])
        mask = guides.alpha[row].astype(np.uint8)
        # "Inside" the mask: away from the silhouette, where the surface turns away from
        # the camera by definition (1/32 of the crop).
        inner = cv2.erode(mask, np.ones((17, 17), np.uint8)) > 0
        full.append(normals[mask > 0, 2].mean())
        interior.append(normals[inner, 2].mean())
    print(f"frontal frames (head within {angle[rows].max():.1f} deg): normal z mean "
          f"{np.mean(full):.3f} over the mask, {np.mean(interior):.3f} inside it")
    assert np.mean(interior) > 0.8
    assert np.mean(full) > 0.7


# Points whose region is known: midpoints between landmarks on either side of a feature.
REGION_PROBES = {
    "lips": [(0, 13), (17, 14), (37, 82), (267, 312), (84, 87), (314, 317)],
    "brows": [(53, 63), (52, 105), (65, 66), (283, 293), (282, 334), (295, 296)],
    "eyes": [(468, 468), (473, 473)],  # the iris centres
    "skin": [(1, 1), (50, 50), (280, 280), (9, 9), (199, 199)],  # nose, cheeks, glabella, chin
}


def test_regions_hold_their_landmarks(guides, track):
    hits = {name: [] for name in REGION_PROBES}
    blink = [track.meta["blendshape_names"].index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    for row in np.flatnonzero(track.present)[::10]:
        crop_points = apply(guides.crops[row], track.landmarks[row, :, :2])
        for name, pairs in REGION_PROBES.items():
            if name == "eyes" and track.blendshapes[row, blink].max() > 0.4:
                continue  # a closed eye hides the iris
            for a, b in pairs:
                x, y = (crop_points[a] + crop_points[b]) / 2
                hits[name].append(guides.region[row, int(y), int(x)] == REGION_LABELS[name])
    rates = {name: float(np.mean(v)) for name, v in hits.items()}
    print("landmarks in their own region:", rates)
    assert all(rate >= 0.9 for rate in rates.values()), rates
    # An open mouth shows the mouth interior between the inner lips.
    jaw = track.meta["blendshape_names"].index("jawOpen")
    row = int(np.nanargmax(track.blendshapes[:, jaw]))
    x, y = apply(guides.crops[row], track.landmarks[row, [13, 14], :2]).mean(axis=0)
    assert guides.region[row, int(y), int(x)] == REGION_LABELS["mouth_interior"]


def test_crop_round_trip_is_exact(guides, track):
    rows = np.flatnonzero(track.present)
    points = track.landmarks[rows, :, :2]
    back = apply(invert(guides.crops[rows]), apply(guides.crops[rows], points))
    assert np.abs(back - points).max() < 0.5
    assert np.abs(back - points).max() < 1e-6  # exact up to rounding, in fact


def test_uv_guide_matches_a_blender_render_of_a_painted_texture(franck300_shot, guides, track,
                                                                 tmp_path, artifacts):
    """Paint a texture in UV space, render the face with it in Cycles through a camera that
    is the crop (roll + shift + zoom of the plate camera), and sample the same texture
    with the UV guide: the two images must agree."""
    import bpy

    row = int(_frontal_rows(track, 1)[0][0])
    size = 256
    texture_size = 256
    u, v = np.meshgrid(np.linspace(0, 1, texture_size), np.linspace(0, 1, texture_size))
    painted = np.stack([u, v, 0.5 + 0.5 * np.sin(6 * math.pi * u) * np.cos(4 * math.pi * v),
                        np.ones_like(u)], axis=-1).astype(np.float32)  # row 0 is v = 0

    bpy.ops.wm.open_mainfile(filepath=str(ShotLayout(franck300_shot).plate.scene))
    scene = bpy.context.scene
    image = bpy.data.images.new("painted", texture_size, texture_size, float_buffer=True)
    image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(painted.ravel())
    material = bpy.data.materials.new("painted")
    if material.node_tree is None:  # Blender 5.0 gives new materials a node tree
        material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    tex = nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation = image, "Linear"
    emission = nodes.new("ShaderNodeEmission")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(tex.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], output.inputs["Surface"])
    face = bpy.data.objects["FaceGraft Face"]
    face.data.materials.append(material)

    # The crop as a camera: A = s * Rot(theta) (+ shift) on plate pixels.
    crop = guides.crops[row]
    scale = math.hypot(crop[0, 0], crop[0, 1])
    theta = math.atan2(crop[0, 1], crop[0, 0])
    intr = track.intrinsics
    centre = crop[:, :2] @ np.array([intr.cx, intr.cy]) + crop[:, 2]
    from mathutils import Matrix

    # Roll the camera about its view axis by -theta; the face, parented to the camera,
    # gets the opposite roll so that it stays where it was in the world.
    camera = bpy.data.objects["FaceGraft Camera"]
    camera.matrix_world = camera.matrix_world @ Matrix.Rotation(-theta, 4, "Z")
    face.matrix_parent_inverse = Matrix.Rotation(theta, 4, "Z")
    cam = camera.data
    cam.lens = scale * intr.focal_px * cam.sensor_height / size
    cam.shift_x = (size / 2 - centre[0]) / size
    cam.shift_y = (centre[1] - size / 2) / size
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 16
    scene.cycles.device = "CPU"
    scene.render.film_transparent = True
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "OPEN_EXR"
    scene.render.image_settings.color_depth = "32"
    scene.frame_set(int(track.meta["start"]) + 1 + row)
    out = tmp_path / "uv_render.exr"
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)
    rendered = bpy.data.images.load(str(out))
    pixels = np.array(rendered.pixels[:], np.float32).reshape(size, size, 4)[::-1]  # top row 0

    uv = decode_uv(guides.uv[row])
    region = guides.region[row]
    sampled = cv2.remap(painted[..., :3], (uv[..., 0] * (texture_size - 1)).astype(np.float32),
                        (uv[..., 1] * (texture_size - 1)).astype(np.float32), cv2.INTER_LINEAR)
    surface = np.isin(region, [REGION_LABELS[n] for n in ("skin", "lips", "brows")])
    inner = cv2.erode(surface.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    inner &= pixels[..., 3] > 0.99
    error = np.abs(pixels[..., :3] - sampled)[inner].mean()
    wrong = np.abs(pixels[..., :3] - sampled[:, ::-1])[inner].mean()  # a mirrored UV guide
    print(f"UV round trip: mean abs difference {error:.4f} (mirrored guide: {wrong:.4f}), "
          f"{inner.sum()} pixels")
    side_by_side = np.hstack([pixels[..., 2::-1], sampled[..., ::-1]]).clip(0, 1) * 255
    cv2.imwrite(str(artifacts / "guides_uv_render.png"), side_by_side.astype(np.uint8))
    assert inner.sum() > 5000
    assert error < 0.03
    assert wrong > 3 * error


def test_bad_inputs(cli, tmp_path, franck300_shot, track):
    result = cli("guides", "--shot", tmp_path)
    assert result.returncode == 1 and "no track file" in result.stderr
    result = cli("guides", "--shot", franck300_shot, "--size", "100")
    assert result.returncode == 2 and "multiple of 64" in result.stderr
    assert not ShotLayout(franck300_shot).plate.guides(100).exists()
    empty = ShotLayout(tmp_path / "empty").plate
    empty.path.mkdir(parents=True)
    track.present[:] = False
    save_track(track, empty.track)
    result = cli("guides", "--shot", tmp_path / "empty")
    assert result.returncode == 1 and "no frame with a face" in result.stderr
    assert sorted(p.name for p in empty.path.iterdir()) == [empty.track.name]
