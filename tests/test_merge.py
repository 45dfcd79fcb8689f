"""Merge: colour matching in Lab, the matte from the mesh's regions, smoothing over time,
and the folder it writes (on the real frames of the fast run)."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from facegraft.common.dataset_file import load_dataset
from facegraft.common.guides_file import REGION_LABELS, load_guides
from facegraft.common.shot_layout import ShotLayout
from facegraft.common.swap_file import load_swap
from facegraft.pipeline.merge import (
    MergeOptions,
    apply_color,
    color_statistics,
    crop_matte,
    merge,
    smooth_over_time,
    with_detail,
)


@pytest.fixture(scope="module")
def crops(fast_run):
    layout = ShotLayout(fast_run.out)
    swapped = load_swap(layout.swap("tiny"))
    guides = load_guides(layout.plate.path / swapped["meta"]["guides"])
    data = load_dataset(layout.plate.dataset(64))
    return swapped, guides, data


@pytest.mark.parametrize("mode", ["mean", "meanstd", "hist"])
def test_colour_matching_brings_the_swap_to_the_plate(crops, mode):
    swapped, guides, data = crops
    row = 10
    skin = (np.asarray(guides.region[row]) == REGION_LABELS["skin"]) & (
        np.asarray(data["mask"][row]) > 0)
    swap_rgb = np.asarray(swapped["rgba"][row, ..., :3])
    plate_rgb = np.asarray(data["rgb"][row])
    params = color_statistics(swap_rgb, plate_rgb, skin, mode)
    matched = apply_color(swap_rgb, params, mode)

    def lab(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[skin].astype(float)

    before = np.abs(lab(swap_rgb).mean(0) - lab(plate_rgb).mean(0)).sum()
    after = np.abs(lab(matched).mean(0) - lab(plate_rgb).mean(0)).sum()
    print(f"{mode}: Lab mean distance {before:.1f} -> {after:.1f}")
    assert after < before / 3 and after < 4
    if mode in ("meanstd", "hist"):
        spread = np.abs(lab(matched).std(0) - lab(plate_rgb).std(0)).sum()
        assert spread < 4
    assert np.array_equal(apply_color(swap_rgb, params, "none"), swap_rgb)


def test_matte_stays_on_the_mesh_and_can_leave_the_mouth_to_the_plate(crops):
    _, guides, _ = crops
    region = np.asarray(guides.region)
    row = int(np.argmax((region == REGION_LABELS["mouth_interior"]).sum(axis=(1, 2))))
    mouth = region[row] == REGION_LABELS["mouth_interior"]
    normals = np.asarray(guides.normals[row])
    swap_mouth = crop_matte(region[row], normals, MergeOptions(mouth="swap", feather=0))
    plate_mouth = crop_matte(region[row], normals, MergeOptions(mouth="plate", feather=0))
    assert np.all(swap_mouth[region[row] == 0] == 0)
    assert swap_mouth.max() == 1.0
    if mouth.sum() >= 4:
        assert plate_mouth[mouth].max() == 0 and swap_mouth[mouth].mean() > 0.5
    # Erosion pulls the matte in from the mesh's edge; feathering softens it inside.
    hard = crop_matte(region[row], normals, MergeOptions(erode=0, feather=0))
    eroded = crop_matte(region[row], normals, MergeOptions(erode=0.05, feather=0))
    soft = crop_matte(region[row], normals, MergeOptions(erode=0, feather=0.1))
    assert (eroded > 0).sum() < (hard > 0).sum()
    assert ((soft > 0.01) & (soft < 0.99)).sum() > ((hard > 0.01) & (hard < 0.99)).sum()


def test_only_the_surface_turned_away_at_the_outline_fades(crops):
    """The far cheek seen edge-on fades to the plate; a patch turned away inside the face
    (the side of the nose, a cheek a smile lifts) does not: the plate's nostrils would show
    through the swap."""
    _, guides, _ = crops
    region = np.asarray(guides.region[0])
    normals = np.asarray(guides.normals[0]).copy()
    inside = region > 0
    rows, cols = np.nonzero(inside)
    centre = (int(rows.mean()), int(cols.mean()))
    interior = np.zeros(inside.shape, bool)
    interior[centre[0] - 3:centre[0] + 3, centre[1] - 3:centre[1] + 3] = True
    far_cheek = inside & (np.arange(inside.shape[1]) > cols.max() - 6)
    normals[..., 2] = 255  # facing the camera
    normals[interior | far_cheek, 2] = 140  # z about 0.1: edge-on
    matte = crop_matte(region, normals, MergeOptions(erode=0, feather=0))
    assert matte[interior].min() == 1.0
    assert matte[far_cheek].max() < 0.1


def test_colour_statistics_are_smoothed_over_time():
    rng = np.random.default_rng(0)
    noisy = [np.full((2, 2, 3), 100.0) + rng.normal(0, 5, (2, 2, 3)) for _ in range(50)]
    noisy[20] = None  # a frame without skin takes its neighbours'
    smooth = smooth_over_time(noisy, sigma_frames=6)
    steps = [np.abs(smooth[i + 1] - smooth[i]).mean() for i in range(49)]
    raw_steps = [np.abs(noisy[i + 1] - noisy[i]).mean() for i in range(49)
                 if noisy[i] is not None and noisy[i + 1] is not None]
    assert np.mean(steps) < np.mean(raw_steps) / 5
    assert smooth[20] is not None


def test_merge_folder_is_complete_and_reruns_skip(fast_run, tmp_path):
    layout = ShotLayout(fast_run.out)
    swap = tmp_path / "swap_copy"
    shutil.copytree(layout.swap("tiny"), swap)
    options = MergeOptions(color="hist", mouth="plate")
    folder = merge(layout, swap, tmp_path / "merge_copy", options, progress_mode="none")
    assert folder == tmp_path / "merge_copy"
    assert len(list((folder / "swap").glob("swap_*.png"))) == 20
    assert len(list((folder / "matte").glob("matte_*.png"))) == 20
    assert len(list((folder / "occlusion").glob("occlusion_*.png"))) == 20
    face = cv2.imread(str(folder / "swap" / "swap_000005.png"), cv2.IMREAD_UNCHANGED)
    # The swap's alpha (the tiny model's own prediction) lies on the face, nowhere else.
    assert face.shape == (360, 640, 4) and (face[..., 3] > 0).sum() > 2000
    assert face[:40, :40, 3].max() == 0 and face[-40:, -40:, 3].max() == 0
    stamp = (folder / "meta.json").stat().st_mtime_ns
    assert merge(layout, swap, folder, options, progress_mode="none") == folder
    assert (folder / "meta.json").stat().st_mtime_ns == stamp


def test_an_artists_occlusion_frame_cuts_the_matte(fast_run, tmp_path):
    """A corrected occlusion frame in SHOT/occlusion_corrected replaces the model's for that
    frame: the matte is cut where it says something stands in front of the face."""
    layout = ShotLayout(fast_run.out)
    swap = tmp_path / "swap_copy"
    shutil.copytree(layout.swap("tiny"), swap)
    corrections = layout.occlusion_corrected
    corrections.mkdir()
    try:
        occluder = np.zeros((360, 640), np.uint8)
        occluder[:, :320] = 255  # the artist paints the left half as "in front"
        cv2.imwrite(str(corrections / "occlusion_000005.png"), occluder)
        folder = merge(layout, swap, tmp_path / "merge_copy", MergeOptions(),
                       progress_mode="none")
    finally:
        shutil.rmtree(corrections)
    occlusion = cv2.imread(str(folder / "occlusion" / "occlusion_000005.png"), 0)
    assert np.array_equal(occlusion, occluder)
    matte = cv2.imread(str(folder / "matte" / "matte_000005.png"), 0)
    other = cv2.imread(str(folder / "matte" / "matte_000006.png"), 0)
    assert matte[:, :320].max() == 0 and matte[:, 320:].max() > 200
    assert other[:, :320].max() > 200  # the other frames keep their face


def test_the_plate_keeps_its_hairline_where_either_person_has_hair(fast_run):
    """Hair is dark texels of the upper face that reach the mesh's outline: a fringe at the
    top of the forehead is found, a mole and the lashes are not, and nothing below the
    nose is (a beard is the face's). On the real textures: man A's fringe and temples,
    none on man B (short hair, clear forehead)."""
    from facegraft.common.canonical_mesh import load_canonical_mesh
    from facegraft.pipeline.merge import hair_in_uv
    from facegraft.pipeline.texture import load_texture

    size = 256
    uvs = load_canonical_mesh().uvs

    def texel(vertex: int) -> tuple[int, int]:
        return int(uvs[vertex, 0] * size), int((1 - uvs[vertex, 1]) * size)

    albedo = np.full((size, size, 3), 0.3, np.float32)
    cv2.circle(albedo, texel(10), 14, (0.02, 0.02, 0.02), -1)  # the forehead's top
    cv2.circle(albedo, texel(9), 5, (0.02, 0.02, 0.02), -1)  # between the brows
    cv2.circle(albedo, texel(152), 14, (0.02, 0.02, 0.02), -1)  # the chin's tip
    hair = hair_in_uv(albedo)
    (fx, fy), (mx, my), (cx, cy) = texel(10), texel(9), texel(152)
    assert hair[fy + 6, fx] > 0.9  # just inside the outline
    assert hair[my, mx] < 0.05 and hair[cy - 6, cx] < 0.05

    layout = ShotLayout(fast_run.out)
    source = hair_in_uv(load_texture(layout.source.texture).albedo)
    plate = hair_in_uv(load_texture(layout.plate.texture).albedo)
    below_nose = int((1 - uvs[1, 1]) * source.shape[0])
    assert 0.01 < (source > 0.5).mean() < 0.1 and (plate > 0.5).mean() < 0.005
    assert source[below_nose + 20:].max() < 0.05


def test_the_textures_detail_darkens_skin_without_reddening_it():
    """Detail (a gain in linear light) scales the three channels alike: a dark nostril's
    edge on pink skin gets darker, not redder (an offset in sRGB saturated it to red)."""
    from facegraft.pipeline.texture import to_linear

    skin = np.full((32, 32, 3), (205, 140, 120), np.uint8)
    gain = np.ones((32, 32), np.float32)
    gain[8:24, 8:24] = 0.5
    where = np.zeros((32, 32), bool)
    where[4:28, 4:28] = True
    out = with_detail(skin, gain, where)
    before, after = to_linear(skin[16, 16]), to_linear(out[16, 16])
    assert np.allclose(after.sum() / before.sum(), 0.5, atol=0.02)
    assert np.allclose(after / after.sum(), before / before.sum(), atol=0.01)  # same hue
    assert (out[:4] == skin[:4]).all() and (out[6, 6] == skin[6, 6]).all()  # gain 1, outside


def test_the_textures_detail_is_its_albedos_not_the_meshs_shading(fast_run):
    """The detail added at plate resolution comes from the albedo: a flat albedo adds none,
    whatever the plate's light does on the coarse mesh's creases (the lit render's
    high-pass drew the nose's sides as dark outlines and its bridge as a bright spot).
    Man A's own albedo adds some."""
    from facegraft.pipeline.merge import _open_inputs, _texture_detail

    layout = ShotLayout(fast_run.out)
    inputs = _open_inputs(layout, layout.swap("tiny"), MergeOptions())
    assert inputs.textured
    row = 5
    crop = np.asarray(inputs.guides.crops[row])
    gain, where, _ = _texture_detail(inputs, row, crop)
    assert where.sum() > 1000 and np.percentile(np.abs(gain[where] - 1), 99) > 0.05
    inputs.source_texture.albedo = np.full_like(inputs.source_texture.albedo, 0.3)
    flat, where, _ = _texture_detail(inputs, row, crop)
    assert np.abs(flat[where] - 1).max() < 1e-3


def _with_a_wider_source(fast_run, root, cli) -> ShotLayout:
    """A copy of the fast run's shot whose Source Identity key an artist widened by 15 %
    (man A's own face is hardly wider than man B's), its guides and swap made again."""
    import bpy
    from facegraft.addon.blend_file import save_blend_atomic
    from facegraft.addon.build import FACE_NAME
    from facegraft.common.shot_layout import SOURCE_IDENTITY_KEY

    layout, wider = ShotLayout(fast_run.out), ShotLayout(root)
    shutil.copytree(layout.plate.path, wider.plate.path)
    wider.source.path.symlink_to(layout.source.path)
    wider.model("tiny").symlink_to(layout.model("tiny"))
    bpy.ops.wm.open_mainfile(filepath=str(wider.plate.scene))
    key = bpy.data.objects[FACE_NAME].data.shape_keys.key_blocks[SOURCE_IDENTITY_KEY]
    shape = np.empty(len(key.data) * 3, np.float32)
    key.data.foreach_get("co", shape)
    shape = shape.reshape(-1, 3)
    shape[:, 0] = shape[:, 0].mean() + 1.15 * (shape[:, 0] - shape[:, 0].mean())
    key.data.foreach_set("co", shape.ravel())
    save_blend_atomic(wider.plate.scene)
    for args in (("guides", "--role", "plate", "--size", "tiny", "--force"),
                 ("swap", "--profile", "tiny", "--force")):
        result = cli(*args, "--shot", root, "--progress", "none")
        assert result.returncode == 0, result.stderr
    return wider


def test_the_plate_outline_keeps_the_plates_background_beside_a_wider_face(fast_run, tmp_path,
                                                                          cli):
    """A source face wider than man B's: with the source's outline the matte reaches past
    man B's face mesh (where the network can only guess a cheek over the door); with the
    plate's (the default) it stays inside it and is otherwise the same."""
    from facegraft.common.crop import for_opencv

    # The fast run's folder depth, so that the .blend's relative paths still reach the videos.
    layout = _with_a_wider_source(fast_run, tmp_path / "run", cli)
    mattes = {}
    for outline in ("plate", "source"):
        swap = tmp_path / f"swap_{outline}"
        shutil.copytree(layout.swap("tiny"), swap)
        folder = merge(layout, swap, tmp_path / f"merge_{outline}",
                       MergeOptions(outline=outline), progress_mode="none")
        mattes[outline] = np.stack([cv2.imread(str(folder / "matte" / f"matte_{frame:06d}.png"),
                                               0) for frame in range(1, 21)]).astype(int)
    data = load_dataset(layout.plate.dataset(64))
    plate_face = np.stack([cv2.warpAffine(
        (np.asarray(data["region"][row]) > 0).astype(np.uint8), for_opencv(data["crops"][row]),
        (640, 360), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) for row in range(20)]) > 0
    # A crop pixel is about 4 plate pixels: the warp's interpolation reaches that far.
    beyond = cv2.dilate(plate_face.astype(np.uint8).reshape(-1, 640), np.ones((9, 9), np.uint8)
                        ).reshape(plate_face.shape) == 0
    assert (mattes["source"][beyond] > 128).sum() > 200  # the wider cheek, over the door
    assert mattes["plate"][beyond].max() == 0
    assert (mattes["plate"] <= mattes["source"] + 1).all()
    inner = cv2.erode(plate_face.astype(np.uint8).reshape(-1, 640), np.ones((31, 31), np.uint8)
                      ).reshape(plate_face.shape) > 0
    difference = np.abs(mattes["plate"] - mattes["source"])[inner]
    assert difference.mean() < 2
