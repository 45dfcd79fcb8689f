"""The texture stage on real footage: the albedo it unwraps and the light it fits explain
the footage's own frames when rendered through the guides, an artist's paint is kept, and
a rerun does nothing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from facegraft.common.dataset_file import load_dataset
from facegraft.common.guides_file import REGION_LABELS
from facegraft.common.shot_layout import ShotLayout
from facegraft.pipeline.texture import (
    SHADING_FLOOR,
    TEXTURE_SIZE,
    broad_relighting,
    load_texture,
    relight,
    render_face,
    sh_basis,
    shading,
)


@pytest.fixture(scope="module")
def texture_folder(franck300_shot, franck300_guides, cli):
    for stage in ("dataset", "texture"):
        result = cli(stage, "--shot", franck300_shot, "--size", "256", "--progress", "none")
        assert result.returncode == 0, result.stderr
    return ShotLayout(franck300_shot).plate.texture


def test_texture_folder(texture_folder):
    texture = load_texture(texture_folder)
    assert texture.albedo.shape == (TEXTURE_SIZE, TEXTURE_SIZE, 3)
    assert texture.lighting.shape == (300, 3, 9) and np.isfinite(texture.lighting).all()
    coverage = cv2.imread(str(texture_folder / "coverage.png"), cv2.IMREAD_GRAYSCALE)
    # The UV layout's face (its centre) was seen, its front squarely (the coverage weighs
    # each view by how squarely it saw the texel: under the nose less); the layout's
    # corners are filled in.
    third = TEXTURE_SIZE // 3
    centre = coverage[third:2 * third, third:2 * third]
    assert (centre > 0).mean() > 0.95 and (centre > 64).mean() > 0.6
    assert coverage[:20, :20].max() == 0
    # The shading is normalised: a frontal normal is lit about 1.
    assert 0.5 < shading(np.array([0.0, 0.0, 1.0]), texture.average_lighting).mean() < 1.5


def test_the_texture_explains_the_footage(texture_folder, franck300_shot, artifacts):
    """Rendered through a frame's guides under that frame's light, the albedo gives back
    the frame's face: the CG half of the swap reproduces the footage."""
    texture = load_texture(texture_folder)
    data = load_dataset(ShotLayout(franck300_shot).plate.dataset(256))
    errors, tiles = [], []
    for row in (10, 100, 200, 290):
        render = render_face(texture, data["uv"][row], data["normals"][row], data["region"][row],
                             texture.lighting[row])
        skin = np.asarray(data["region"][row]) == REGION_LABELS["skin"]
        skin = cv2.erode(skin.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        frame = np.asarray(data["rgb"][row])
        errors.append(np.abs(render.astype(int) - frame)[skin].mean())
        tiles.append(np.hstack([frame, render]))
    cv2.imwrite(str(artifacts / "texture_render_vs_footage.png"), np.vstack(tiles)[..., ::-1])
    print(f"texture render vs footage on the skin: {np.mean(errors):.1f} levels (0-255)")
    assert np.mean(errors) < 12


def test_rerun_skips_and_an_artists_paint_is_kept(texture_folder, franck300_shot, cli):
    albedo = texture_folder / "albedo.png"
    stamp = albedo.stat().st_mtime_ns
    result = cli("texture", "--shot", franck300_shot, "--size", "256", "--progress", "json")
    assert result.returncode == 0 and '"skipped": true' in result.stdout
    assert albedo.stat().st_mtime_ns == stamp
    # The artist paints a mole on the cheek and saves.
    image = cv2.imread(str(albedo))
    cv2.circle(image, (300, 560), 12, (40, 40, 90), -1)
    cv2.imwrite(str(albedo), image)
    painted = albedo.read_bytes()
    result = cli("texture", "--shot", franck300_shot, "--size", "256", "--force",
                 "--progress", "none")
    assert result.returncode == 0, result.stderr
    assert albedo.read_bytes() == painted
    assert json.loads((texture_folder / "meta.json").read_text())["albedo_by"] == "artist"
    assert load_texture(texture_folder).lighting.shape == (300, 3, 9)


def test_relighting_does_not_trust_a_light_that_barely_reaches_a_normal():
    """A top-lit source's fitted light dips to near nothing under the nose; relit under a
    flat plate light, the underside of his nose came out brighter than his cheeks. Each
    shading counts at least SHADING_FLOOR of the face's average, so the ratio there stays
    modest, while a normal both lights reach is relit exactly."""
    rng = np.random.default_rng(0)
    normals = rng.normal(size=(4000, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    basis = sh_basis(normals)

    def light(values: np.ndarray) -> np.ndarray:  # one grey light fitted to shading values
        coefficients = np.linalg.lstsq(basis, values, rcond=None)[0]
        return np.repeat(coefficients[None], 3, axis=0).astype(np.float32)

    top = light(np.clip(0.9 + 1.1 * normals[:, 1], 0.02, None))  # +y is up
    flat = light(np.full(len(normals), 0.8))
    under_nose, frontal = np.array([0.0, -0.8, 0.6]), np.array([0.0, 0.3, 0.954])
    assert shading(under_nose, top).max() < 0.15  # the fit all but leaves it dark
    ratio = relight(under_nose, flat, top)
    assert np.allclose(ratio, 0.8 / SHADING_FLOOR, rtol=0.05)  # was clipped at 2
    exact = shading(frontal, flat) / shading(frontal, top)
    assert np.allclose(relight(frontal, flat, top), exact)


def test_the_relighting_keeps_its_broad_changes_and_drops_the_meshs_creases():
    """A frame's relighting ratio over the face is blurred to its broad changes: a light
    that brightens one side of the face more than the other stays as it is inside the
    face, up to its outline (the blur is weighed by the face), while a crease's bright
    crescent two pixels wide (the coarse mesh's eye-socket rim) is mostly gone."""
    size = 128
    face = np.zeros((size, size), bool)
    cv2.ellipse(face.view(np.uint8), (64, 64), (40, 50), 0, 0, 360, 1, -1)
    x = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
    sideways = np.repeat(np.broadcast_to(0.8 + 0.6 * x, (size, size, 1)), 3, axis=2)
    kept = broad_relighting(sideways, face)
    inner = cv2.erode(face.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    assert np.abs(kept - sideways)[inner].max() < 0.01
    assert np.abs(kept - sideways)[face].max() < 0.05  # at the outline, too
    creased = np.ones((size, size, 3), np.float32)
    creased[40:42, 44:84] = 2.0
    assert broad_relighting(creased, face)[40:42, 44:84].max() < 1.25
