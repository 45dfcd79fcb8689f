"""``facegraft merge``: the swapped faces back in plate space, colour matched, with a matte
(the folder's format is in ``common/merge_file.py``).

Everything per pixel happens at crop resolution and only the results are warped to the
plate, which keeps the merge far above real time. Colour statistics are smoothed over
time: a per-frame match would make the face flicker with every change of the plate.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.canonical_mesh import load_canonical_mesh
from ..common.crop import apply, for_opencv, invert
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.file_checks import png_is_complete
from ..common.frame_parts import (
    chunk_span,
    covering_parts,
    part_folder,
    part_is_done,
    remove_parts,
    write_part_meta,
)
from ..common.guides_file import REGION_LABELS, Guides, load_guides
from ..common.merge_file import (
    COLOR_MODES,
    MERGE_FORMAT,
    MERGE_VERSION,
    MOUTH_MODES,
    OUTLINE_MODES,
    SEQUENCES,
    SHADING_MODES,
    frame_path,
    merge_is_complete,
    sequence_name,
)
from ..common.profiles import get_profile
from ..common.progress import Progress
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import is_up_to_date, written_folder
from ..common.stage_table import revision
from ..common.swap_file import load_swap
from ..common.texture_file import texture_key
from ..common.track_file import load_track
from .texture import (
    Texture,
    blur_within,
    load_texture,
    look_up,
    render_face,
    texel_map,
    to_linear,
    to_srgb,
)
from .video import VideoInfo, probe_video, read_frames

# Mostly-empty frames: run-length coding is as fast as the lightest deflate and smaller.
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
            cv2.IMWRITE_PNG_STRATEGY_RLE]
WRITERS = 2  # PNG encoding releases the GIL: encode on both cores while the next frame warps
OCCLUSION_CLIP = (0.15 * 255, 0.85 * 255)  # the occlusion head's matte: black and white points
SHADED_REGIONS = (REGION_LABELS["skin"], REGION_LABELS["brows"], REGION_LABELS["lips"])
HAIR_SHADE = 0.6  # upper-face texels darker than this share of the skin's median are hair
LUMINANCE = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709, of linear RGB
# The texture's detail brightens or darkens the face at most this much: a texel of the
# render far from its surroundings (a nostril's edge) should not punch through.
MAX_DETAIL_GAIN = 2.0
NOSE_TIP = 1  # MediaPipe's vertex: hair is looked for above it (not the beard, the lips)


@dataclass
class MergeOptions:
    color: str = "meanstd"  # none | mean | meanstd (mean and deviation in Lab) | hist
    erode: float = 0.015  # matte erosion, as a fraction of the crop width
    feather: float = 0.03  # matte feather (blur width), as a fraction of the crop width
    mouth: str = "swap"  # the mouth interior from the swap or from the plate
    shading: str = "render"  # the face's broad shading from the CG render, or as it is
    # Whose face outline bounds the matte. The plate's: where the source's face is wider,
    # the plate's background stays (the network can only guess the cheek over a door and
    # paints it pale). The source's: his face shape, for a background an artist repaints.
    outline: str = "plate"
    detail: float = 1.0  # how much of the texture's fine detail to add at plate resolution
    color_smoothing_s: float = 0.5  # time constant of the colour statistics

    def check(self) -> None:
        if self.color not in COLOR_MODES:
            raise FaceGraftError(f"colour mode {self.color!r}: choose one of {COLOR_MODES}")
        if self.mouth not in MOUTH_MODES:
            raise FaceGraftError(f"mouth {self.mouth!r}: choose one of {MOUTH_MODES}")
        if self.shading not in SHADING_MODES:
            raise FaceGraftError(f"shading {self.shading!r}: choose one of {SHADING_MODES}")
        if self.outline not in OUTLINE_MODES:
            raise FaceGraftError(f"outline {self.outline!r}: choose one of {OUTLINE_MODES}")
        if not (0 <= self.erode < 0.25 and 0 <= self.feather < 0.25):
            raise FaceGraftError("erode and feather are fractions of the crop width "
                                 "from 0 to 0.25")
        if not 0 <= self.detail <= 4:
            raise FaceGraftError("detail is a gain from 0 to 4")


def crop_matte(region: np.ndarray, normals: np.ndarray, options: MergeOptions) -> np.ndarray:
    """The float matte of one frame in crop space from its source-shaped guides."""
    size = region.shape[0]
    inside = region > 0
    if options.mouth == "plate":
        inside &= region != REGION_LABELS["mouth_interior"]
    matte = inside.astype(np.float32)
    erode = int(round(options.erode * size))
    if erode > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode + 1, 2 * erode + 1))
        matte = cv2.erode(matte, kernel)
    matte *= silhouette_fade(inside, normals)
    feather = options.feather * size
    if feather > 0:
        matte = cv2.GaussianBlur(matte, (0, 0), sigmaX=feather / 2)
        matte *= inside  # never beyond the mesh
    return matte


def silhouette_fade(inside: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """(H, W) float32 matte factor: the surface seen edge-on at the face's outline (the far
    cheek of a turned head) is where the swap is least reliable and the plate's own
    silhouette must show, so it fades with the normal's z. Only there: the sides of the
    nose and the cheeks a smile lifts also turn away from the camera, and fading them let
    the plate's nostrils and folds show through the swap (a ghost of the plate's face)."""
    facing = normals[..., 2].astype(np.float32) / 127.5 - 1
    fade = np.clip((facing - 0.1) / 0.25, 0, 1)
    turned = ((fade < 1) & inside).astype(np.uint8)
    outline = inside & (cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)) == 0)
    _, parts = cv2.connectedComponents(turned, connectivity=8)
    at_outline = np.unique(parts[outline & (turned > 0)])
    return np.where(np.isin(parts, at_outline[at_outline > 0]), fade, 1).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)


def _histogram_lut(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(256,) look-up table mapping the values of ``source`` onto ``target``'s histogram."""
    levels = np.arange(256)
    source_cdf = np.cumsum(np.bincount(source, minlength=256)) / max(len(source), 1)
    target_cdf = np.cumsum(np.bincount(target, minlength=256)) / max(len(target), 1)
    return np.interp(source_cdf, target_cdf, levels)


def color_statistics(swap_rgb: np.ndarray, plate_rgb: np.ndarray, skin: np.ndarray,
                     mode: str) -> np.ndarray | None:
    """One frame's colour transfer parameters in Lab, or None without enough skin.
    mean/meanstd: (2, 2, 3) = [swap, plate] x [mean, std] x L,a,b; hist: (3, 256) LUTs."""
    if skin.sum() < 64:
        return None
    a = _lab(swap_rgb)[skin].astype(np.float32)
    b = _lab(plate_rgb)[skin].astype(np.float32)
    if mode == "hist":
        return np.stack([_histogram_lut(a[:, c].astype(np.int64), b[:, c].astype(np.int64))
                         for c in range(3)])
    return np.array([[a.mean(0), a.std(0)], [b.mean(0), b.std(0)]])


def apply_color(swap_rgb: np.ndarray, params: np.ndarray | None, mode: str) -> np.ndarray:
    if mode == "none" or params is None:
        return swap_rgb
    lab = _lab(swap_rgb).astype(np.float32)
    if mode == "hist":
        out = np.stack([params[c][lab[..., c].astype(np.int64)] for c in range(3)], axis=-1)
    elif mode == "mean":
        out = lab - params[0, 0] + params[1, 0]
    else:
        out = (lab - params[0, 0]) / np.maximum(params[0, 1], 1.0) * params[1, 1] + params[1, 0]
    out = np.clip(out, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2RGB)


def smooth_over_time(params: list[np.ndarray | None], sigma_frames: float) -> list:
    """Gaussian-weighted average of each frame's parameters over its neighbours (frames
    without parameters take their neighbours')."""
    known = [i for i, p in enumerate(params) if p is not None]
    if not known:
        return params
    stack = np.stack([params[i] for i in known])
    times = np.asarray(known, np.float64)
    out = []
    for i in range(len(params)):
        weights = np.exp(-0.5 * ((times - i) / max(sigma_frames, 1e-3)) ** 2)
        if weights.sum() < 1e-6:
            weights = (times == times[np.argmin(np.abs(times - i))]).astype(np.float64)
        out.append(np.tensordot(weights / weights.sum(), stack, axes=1))
    return out


def plate_grain(video: Path, start: int, rows: np.ndarray, crops: np.ndarray,
                region: np.ndarray, samples: int = 8) -> float:
    """The plate's noise level on the face (standard deviation, 0..1 units): the robust
    spread of the fine detail left after a small blur, on a few sampled frames."""
    info = probe_video(video)
    picks = set(rows[np.linspace(0, len(rows) - 1, min(samples, len(rows))).round().astype(int)]
                .tolist())
    sigmas = []
    for index, frame in read_frames(info, start + min(picks), start + max(picks) + 1):
        row = index - start
        if row not in picks:
            continue
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        fine = grey - cv2.GaussianBlur(grey, (0, 0), 1.0)
        face = cv2.warpAffine((region[row] == REGION_LABELS["skin"]).astype(np.uint8),
                              for_opencv(crops[row]), (info.width, info.height),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        if face.sum() > 64:
            values = fine[face]
            sigmas.append(1.4826 * np.median(np.abs(values - np.median(values))))
    return float(np.median(sigmas)) if sigmas else 0.0


def merge_shot(shot: Path, profile: str = "cpu", color: str = "meanstd", erode: float = 0.015,
               feather: float = 0.03, mouth: str = "swap", shading: str = "render",
               detail: float = 1.0, outline: str = "plate", progress_mode: str = "bar",
               force: bool = False, chunk: tuple[int, int] | None = None) -> Path:
    """Merge the shot's swap of ``profile`` into its merge folder; returns the folder.
    ``chunk``: only those scene frames, as a part the run without a chunk joins."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    options = MergeOptions(color=color, erode=erode, feather=feather, mouth=mouth,
                           shading=shading, detail=detail, outline=outline)
    return merge(layout, layout.swap(name), layout.merge(name), options, progress_mode, force,
                 chunk)


@dataclass
class MergeInputs:
    """Everything the merge of one swap reads, opened once."""

    swapped: dict
    guides: Guides  # the swap's (source-shaped) guides
    data: dict  # the plate's dataset
    info: VideoInfo
    options: MergeOptions
    first_scene_frame: int
    corrections: Path  # the artist's occlusion frames
    source_texture: Texture | None = None
    plate_texture: Texture | None = None
    hairline: np.ndarray | None = None  # (T, T) float32 in the UV layout, see hair_in_uv

    @property
    def textured(self) -> bool:
        return self.source_texture is not None and self.plate_texture is not None


def merge(layout: ShotLayout, swap_folder: Path, folder: Path, options: MergeOptions,
          progress_mode: str = "bar", force: bool = False,
          chunk: tuple[int, int] | None = None) -> Path:
    options.check()
    inputs = _open_inputs(layout, swap_folder, options)
    key = hashlib.sha256(json.dumps([
        inputs.swapped["meta"].get("inputs_key"), inputs.guides.meta.get("inputs_key"),
        asdict(options), [texture_key(layout.footage(r).texture) for r in ("source", "plate")],
        _corrections_key(inputs.corrections), MERGE_VERSION, revision("merge")]).encode()
    ).hexdigest()
    n = len(inputs.swapped["present"])
    chunk, span = chunk_span(chunk, inputs.first_scene_frame - 1, n, layout.plate.track)
    if not force and (is_up_to_date(folder, key, merge_is_complete) or (
            chunk is not None and part_is_done(folder, chunk, key, _part_is_complete))):
        Progress("merge", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    started = time.perf_counter()
    parts = None if chunk is not None else covering_parts(folder, key, n, _part_is_complete)
    progress = Progress("merge", span[1] - span[0], progress_mode)
    with written_folder(folder if chunk is None else part_folder(folder, chunk),
                        progress) as partial:
        if parts is not None:  # the time the chunks took, not the join's
            grain = _join_frames(parts, partial)
            seconds = sum(float(meta.get("seconds", 0)) for _, meta in parts)
        else:
            grain = _merge_rows(inputs, swap_folder, span, partial, progress)
            seconds = time.perf_counter() - started
        meta = {"first_scene_frame": inputs.first_scene_frame, "plate_grain": grain}
        if chunk is not None:
            write_part_meta(partial, chunk, span, key, {**meta, "seconds": seconds})
        else:
            (partial / "meta.json").write_text(json.dumps({
                **meta, "format": MERGE_FORMAT, "version": MERGE_VERSION, "frame_count": n,
                "width": inputs.info.width, "height": inputs.info.height,
                "swap": inputs.swapped["meta"]["model"], "options": asdict(options),
                "inputs_key": key, "seconds": round(seconds, 3),
                "fps": round(n / max(seconds, 1e-6), 1)}, indent=1))
    if chunk is None:
        remove_parts(folder)
    progress.finish(output=str(folder), frames=span[1] - span[0])
    return folder


def _merge_rows(inputs: MergeInputs, swap_folder: Path, span: tuple[int, int],
                partial: Path, progress: Progress) -> float:
    """The frames of track rows ``span`` into ``partial``; returns the plate's grain. The
    colour parameters (smoothed over time) and the grain come from the whole shot, so a
    chunk's frames are the whole run's."""
    rows = np.flatnonzero(inputs.swapped["present"])
    if len(rows) == 0:
        raise FaceGraftError(f"{swap_folder}: no swapped frames to merge")
    params = _colour_parameters(inputs, rows)
    grain = plate_grain(inputs.info.path, inputs.first_scene_frame - 1, rows,
                        np.asarray(inputs.guides.crops), inputs.guides.region)
    _write_frames(partial, inputs, params, span, progress)
    return grain


def _part_is_complete(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        first, end = meta["rows"]
        scene_frame = int(meta["first_scene_frame"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(png_is_complete(frame_path(folder, kind, scene_frame + row))
               for kind in SEQUENCES for row in range(first, end))


def _join_frames(parts: list[tuple[Path, dict]], partial: Path) -> float:
    """The parts' frames moved into ``partial``; returns the plate's grain they measured."""
    for kind in SEQUENCES:
        (partial / kind).mkdir()
        for part, _ in parts:
            for image in (part / kind).iterdir():
                os.replace(image, partial / kind / image.name)
    return float(parts[0][1]["plate_grain"])


def _open_inputs(layout: ShotLayout, swap_folder: Path, options: MergeOptions) -> MergeInputs:
    track = load_track(layout.plate.track)
    swapped = load_swap(swap_folder)
    size = swapped["meta"]["resolution"]
    guides = load_guides(layout.plate.path / swapped["meta"]["guides"])
    data = load_dataset(layout.plate.dataset(size))
    if len(swapped["present"]) != track.frame_count or \
            guides.meta["frame_count"] != track.frame_count:
        raise FaceGraftError(f"{swap_folder}: made from another track of the plate; "
                             f"run Swap again")
    inputs = MergeInputs(swapped, guides, data, probe_video(Path(data["meta"]["video"])),
                         options, int(track.meta["start"]) + 1, layout.occlusion_corrected)
    if texture_key(layout.source.texture) and texture_key(layout.plate.texture):
        inputs.source_texture = load_texture(layout.source.texture)
        inputs.plate_texture = load_texture(layout.plate.texture)
        inputs.hairline = np.maximum(hair_in_uv(inputs.source_texture.albedo),
                                     hair_in_uv(inputs.plate_texture.albedo))
    return inputs


def hair_in_uv(albedo: np.ndarray) -> np.ndarray:
    """Where a person's hair lies on the face mesh (fringe, temples, sideburns), (T, T)
    float32 in the UV layout, soft-edged: the upper face's texels much darker than the
    person's skin, in patches that reach the mesh's outline (hair comes in from outside
    the face; lashes and moles do not). A face swap replaces the face, not the hairstyle:
    where either person's hair is, the plate shows (else the source's fringe, cut off by
    the mesh's edge, would be a dark band across the plate's forehead). An artist who wants
    the source's hairline paints it out of the source's albedo."""
    size = albedo.shape[0]
    texels = texel_map(size)
    luminance = (albedo @ LUMINANCE).reshape(-1)
    skin = texels.index[texels.region == REGION_LABELS["skin"]]
    nose_row = (1 - load_canonical_mesh().uvs[NOSE_TIP, 1]) * size
    upper = skin[skin // size < nose_row]
    dark = np.zeros(size * size, np.uint8)
    dark[upper[luminance[upper] < HAIR_SHADE * np.median(luminance[skin])]] = 1
    dark = dark.reshape(size, size)
    step = max(3, size // 100)
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((step, step), np.uint8))
    covered = np.zeros(size * size, np.uint8)
    covered[texels.index] = 1
    covered = covered.reshape(size, size)
    rim = covered - cv2.erode(covered, np.ones((2 * step + 1, 2 * step + 1), np.uint8))
    _, labels = cv2.connectedComponents(dark)
    reaching = np.unique(labels[(rim > 0) & (dark > 0)])
    hair = np.isin(labels, reaching[reaching > 0]).astype(np.float32)
    hair = cv2.dilate(hair, np.ones((step, step), np.uint8))
    return cv2.GaussianBlur(hair, (0, 0), step)


def _corrections_key(folder: Path) -> list:
    """The artist's occlusion frames by name and content."""
    if not folder.is_dir():
        return []
    return [[p.name, sha256_of(p)] for p in sorted(folder.glob("occlusion_*.png"))]


def _render(inputs: MergeInputs, row: int, arrays: dict) -> np.ndarray:
    """The source's texture through guide arrays (crop or plate space) under the plate's
    light of ``row``."""
    return render_face(inputs.source_texture, arrays["uv"], arrays["normals"], arrays["region"],
                       inputs.plate_texture.lighting[row])


def corrected_face(inputs: MergeInputs, row: int) -> np.ndarray:
    """The swapped crop (RGB uint8), its broad shading taken from the CG render under the
    plate's light when asked (the network's blotches go, the plate's light stays)."""
    face = np.asarray(inputs.swapped["rgba"][row, ..., :3])
    if inputs.options.shading != "render" or not inputs.textured:
        return face
    guides = {name: np.asarray(getattr(inputs.guides, name)[row])
              for name in ("uv", "normals", "region")}
    return broad_shading_from(face, _render(inputs, row, guides), guides["region"])


def broad_shading_from(face: np.ndarray, render: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``face`` with the low frequencies of its shading (in linear light) replaced by those
    of ``render``, over the skin, brows and lips; detail finer than an eighth of the crop
    stays the face's own."""
    sigma = face.shape[0] / 12
    use = np.isin(region, SHADED_REGIONS) & (render.max(axis=2) > 0)
    weight = cv2.GaussianBlur(use.astype(np.float32), (0, 0), sigma)
    lin_face = to_linear(face)
    low_render = blur_within(to_linear(render), use, sigma)
    ratio = np.clip(low_render / np.maximum(blur_within(lin_face, use, sigma), 1e-3), 0.6, 1.6)
    ratio = np.where(weight[..., None] > 0.05, ratio, 1.0)
    return to_srgb(lin_face * ratio)


def _colour_parameters(inputs: MergeInputs, rows: np.ndarray) -> list:
    """Each frame's colour transfer parameters, measured on the skin, smoothed over time."""
    options, guides, data = inputs.options, inputs.guides, inputs.data
    params: list[np.ndarray | None] = [None] * len(inputs.swapped["present"])
    if options.color == "none":
        return params
    for row in rows:
        skin = (np.asarray(guides.region[row]) == REGION_LABELS["skin"]) & (
            np.asarray(data["mask"][row]) > 0)
        params[row] = color_statistics(corrected_face(inputs, row), data["rgb"][row], skin,
                                       options.color)
    return smooth_over_time(params, options.color_smoothing_s * inputs.info.fps)


def _texture_detail(inputs: MergeInputs, row: int, crop: np.ndarray) -> tuple | None:
    """The source texture's detail finer than the model's pixels, rendered at plate
    resolution on the face's box: (its gain in linear light float32 (h, w), where it goes
    (h, w) bool, the box (x, y, w, h)); None when there is nothing to add."""
    if not inputs.textured or inputs.options.detail == 0:
        return None
    size = inputs.guides.region.shape[1]
    corners = apply(invert(crop[None])[0], np.array([[0, 0], [size, 0], [0, size],
                                                      [size, size]], np.float64)[None])[0]
    x0, y0 = np.floor(corners.min(axis=0)).astype(int).clip(0)
    x1 = int(min(np.ceil(corners[:, 0].max()), inputs.info.width))
    y1 = int(min(np.ceil(corners[:, 1].max()), inputs.info.height))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    box = crop.copy()
    box[:, 2] += crop[:, :2] @ np.array([x0, y0], np.float64)  # crop <- box pixels
    warp, shape = for_opencv(box), (x1 - x0, y1 - y0)
    flags = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
    uv = cv2.warpAffine(np.asarray(inputs.guides.uv[row]), warp, shape, flags=flags)
    # The skin's share of each pixel, warped smooth: the crop's region labels warped up as
    # labels have a staircase edge that the gain's edge would trace.
    shaded = np.isin(np.asarray(inputs.guides.region[row]), SHADED_REGIONS).astype(np.float32)
    where = cv2.warpAffine(shaded, warp, shape, flags=flags) > 0.5
    # Luminance in linear light: the detail scales all three channels alike, so it darkens
    # or brightens the skin without changing its hue (an offset in sRGB saturates a dark
    # edge towards red: nostrils and lip lines came out as red outlines). The albedo's,
    # not the lit render's: the relighting ratio turns sharply where the coarse mesh
    # creases (the nose's sides, the eye sockets' rims), and its high-pass drew those
    # creases as dark outlines and the bridge of the nose as a bright spot.
    luminance = look_up(inputs.source_texture.albedo, uv) @ LUMINANCE
    pixels_per_texel = 1 / np.hypot(crop[0, 0], crop[0, 1])  # plate px per crop px
    # The high-pass sees only the face (a blur normalised by the face's coverage): the
    # edges of the mouth's opening and of the mesh would otherwise add lines.
    sigma = max(0.7 * pixels_per_texel, 0.5)
    low = blur_within(luminance, where, sigma)
    margin = max(3, int(round(2 * sigma)))
    inner = cv2.erode(where.astype(np.uint8), np.ones((margin, margin), np.uint8)) > 0
    gain = np.clip(luminance / np.maximum(low, 1e-4), 1 / MAX_DETAIL_GAIN, MAX_DETAIL_GAIN)
    return gain ** inputs.options.detail, inner, (x0, y0, x1 - x0, y1 - y0)


def with_detail(face: np.ndarray, gain: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``face`` (H, W, 3) sRGB uint8 with its pixels ``where`` scaled by ``gain`` (H, W) in
    linear light: brighter or darker, the same hue."""
    out = face.copy()
    out[where] = to_srgb(to_linear(face[where]) * gain[where][:, None])
    return out


def _occlusion(inputs: MergeInputs, row: int, crop: np.ndarray) -> np.ndarray:
    """What stands in front of the face in plate space (uint8, 255: occluded): the
    artist's corrected frame when there is one, else the occlusion head's matte."""
    corrected = inputs.corrections / sequence_name("occlusion", inputs.first_scene_frame + row)
    if corrected.is_file():
        image = cv2.imread(str(corrected), cv2.IMREAD_GRAYSCALE)
        if image is None or image.shape != (inputs.info.height, inputs.info.width):
            raise FaceGraftError(f"{corrected}: not a {inputs.info.width}x{inputs.info.height} "
                                 f"grey image")
        return image
    occlusion = np.asarray(inputs.swapped["occlusion"][row]).astype(np.float32)
    # Clean up like a keyer's clip levels: the head's faint doubts (a few percent over a
    # clear face) are no occluder; above 90 % it is one.
    occlusion = np.clip((occlusion - OCCLUSION_CLIP[0]) / (OCCLUSION_CLIP[1] - OCCLUSION_CLIP[0]),
                        0, 1)
    return cv2.warpAffine((occlusion * 255).round().astype(np.uint8), for_opencv(crop),
                          (inputs.info.width, inputs.info.height),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def merge_frame(inputs: MergeInputs, row: int, params) -> tuple[np.ndarray, ...]:
    """One frame in plate space: the swapped face RGBA, its matte and the occlusion."""
    options, crop = inputs.options, np.asarray(inputs.guides.crops[row])
    face = np.array(inputs.swapped["rgba"][row])
    face[..., :3] = apply_color(corrected_face(inputs, row), params, options.color)
    region = np.asarray(inputs.guides.region[row])
    face[..., 3] = np.where(region > 0, face[..., 3], 0)
    matte = crop_matte(region, np.asarray(inputs.guides.normals[row]), options)
    if options.outline == "plate":
        matte *= crop_matte(np.asarray(inputs.data["region"][row]),
                            np.asarray(inputs.data["normals"][row]), options)
    if inputs.hairline is not None:  # the plate's hairline, not the source's
        matte *= 1 - look_up(inputs.hairline, np.asarray(inputs.guides.uv[row]))
    plate_face, plate_matte = _plate_space(face, matte, crop, inputs.info)
    detail = _texture_detail(inputs, row, crop)
    if detail is not None:
        gain, where, (x, y, w, h) = detail
        plate_face[y:y + h, x:x + w, :3] = with_detail(plate_face[y:y + h, x:x + w, :3],
                                                       gain, where)
    occlusion = _occlusion(inputs, row, crop)
    plate_matte = (plate_matte.astype(np.float32) * (1 - occlusion / 255)).round()
    return plate_face, plate_matte.astype(np.uint8), occlusion


def _plate_space(face: np.ndarray, matte: np.ndarray, crop: np.ndarray, info) -> tuple:
    warp = for_opencv(crop)
    size = (info.width, info.height)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return (cv2.warpAffine(face, warp, size, flags=flags),
            cv2.warpAffine((matte * 255).round().astype(np.uint8), warp, size, flags=flags))


def _write_frames(partial: Path, inputs: MergeInputs, params: list, span: tuple[int, int],
                  progress: Progress) -> None:
    """The frames of track rows ``span`` of the swap, matte and occlusion sequences, PNG
    encoding on WRITERS threads."""
    info = inputs.info
    blank_rgba = np.zeros((info.height, info.width, 4), np.uint8)
    blank = np.zeros((info.height, info.width), np.uint8)
    pending: deque = deque()
    for kind in SEQUENCES:
        (partial / kind).mkdir()
    with ThreadPoolExecutor(WRITERS) as writer:
        def write(kind: str, frame: int, image: np.ndarray) -> None:
            pending.append(writer.submit(_write_png, frame_path(partial, kind, frame), image))
            while len(pending) > 4 * WRITERS:
                pending.popleft().result()  # bounded memory; raises a write's error here

        for row in range(*span):
            face, matte, occlusion = blank_rgba, blank, blank
            if inputs.swapped["present"][row]:
                face, matte, occlusion = merge_frame(inputs, row, params[row])
            frame = inputs.first_scene_frame + row
            write("swap", frame, cv2.cvtColor(face, cv2.COLOR_RGBA2BGRA))
            write("matte", frame, matte)
            write("occlusion", frame, occlusion)
            progress.update(row - span[0] + 1)
        while pending:
            pending.popleft().result()


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image, PNG_FAST):
        raise FaceGraftError(f"{path}: could not write (disk full or not writable?)")

