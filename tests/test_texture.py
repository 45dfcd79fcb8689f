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
from facegraft.pipeline.texture import TEXTURE_SIZE, load_texture, render_face, shading


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
