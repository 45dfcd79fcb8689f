"""``facegraft texture``: a footage's face as CG: its albedo in the canonical UV layout and
the light of every frame, so the face can be rendered on any mesh of the canonical
topology under any frame's light.

Format ``facegraft.texture`` version 1, ``SHOT/<role>/texture/``:

- ``albedo.png``: 1024x1024 sRGB, the face's colour in the face mesh's UV layout (row 0
  is v = 1, Blender's convention) as it looks under the footage's average light. An
  artist may paint it: a file that differs from what the stage wrote is theirs and is
  kept.
- ``coverage.png``: 8-bit, how much of the footage saw each texel (0: filled in).
- ``lighting.npy`` (N, 3, 9) float32: per frame and colour channel, second-order
  spherical-harmonic shading coefficients in camera space (normals as the guides store
  them), normalised so the shading averages 1 over the shot's face.
- ``meta.json``: format, version, size, frame_count, inputs_key, albedo_sha256 (of the
  albedo the stage wrote), albedo_by ("facegraft" or "artist").

How: the light of each frame is fitted to its aligned crop and guide normals, taking the
skin for one colour. The albedo is unwrapped from full-resolution frames through the
track's landmarks (the mesh's vertices in the image), each frame brought to the average
light (times the ratio of the average shading to the frame's at each texel's normal),
weighted towards frontal, visible, open-eyed and calm views, averaged robustly (what
differs from the others, say a hand, counts less) and filled where no frame saw the face
(from the mirrored side of the symmetric UV layout, then smoothly).

Rendering (``render_face``) samples an albedo through a UV guide and relights it: times
the ratio of a frame's shading (of any footage) to the albedo's own average shading at
the guide's normals, blurred over the face to its broad changes (the coarse mesh's creases
are not the albedo's). Never dividing the texture by a per-texel shading estimate keeps the
mesh's coarseness out of the colour: only ratios of two smooth shadings are applied, each
shading taken as at least half the face's average (the fit is poor where few pixels face).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.camera import transform_points
from ..common.canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.file_checks import png_is_complete
from ..common.guide_render import GuideRenderer, decode_normals, decode_uv, vertex_normals
from ..common.guides_file import REGION_LABELS
from ..common.progress import Progress
from ..common.raster import rasterize
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import is_up_to_date, read_meta, written_folder
from ..common.stage_table import revision
from ..common.texture_file import TEXTURE_FORMAT, TEXTURE_VERSION, texture_is_complete
from ..common.track_file import Track, load_track_with_faces
from .video import probe_video, read_frames

TEXTURE_SIZE = 1024
ALBEDO_FRAMES = 160  # full-resolution frames the albedo is unwrapped from
LIGHT_SMOOTHING_S = 0.25  # the light changes slowly: per-frame fits are smoothed this much
LIGHT_FITS = 400  # at most this many frames' light is fitted; the others come from them
SKIN = REGION_LABELS["skin"]
LIT_REGIONS = (REGION_LABELS["skin"], REGION_LABELS["brows"], REGION_LABELS["lips"])


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """The nine real spherical harmonics of order <= 2 at unit normals (..., 3)."""
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    return np.stack([np.full_like(x, 0.282095), 0.488603 * y, 0.488603 * z, 0.488603 * x,
                     1.092548 * x * y, 1.092548 * y * z, 0.315392 * (3 * z * z - 1),
                     1.092548 * x * z, 0.546274 * (x * x - y * y)], axis=-1)


def to_linear(srgb: np.ndarray) -> np.ndarray:
    c = srgb.astype(np.float32) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def to_srgb(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0, 1)
    c = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(c * 255).astype(np.uint8)


MAX_RELIGHT = 2.0  # the relighting ratio is kept within [1 / MAX_RELIGHT, MAX_RELIGHT]
# No texel gets less than this share of the face's average light (the shading averages 1):
# nine coefficients fitted mostly to frontal skin dip towards 0 for normals few pixels
# show (the nose's underside, under the chin). A top-lit source put 0.1-0.3 there, so a
# flatter plate light brightened the underside of his nose past his cheeks, a salmon band.
SHADING_FLOOR = 0.5
# A frame's relighting is blurred over the face by this share of the face's size (the
# square root of its area in pixels): 5 px on a 128 px crop's face.
RELIGHT_BLUR = 0.06


@dataclass
class Texture:
    folder: Path
    albedo: np.ndarray  # (T, T, 3) float32, linear, under the average light
    lighting: np.ndarray  # (N, 3, 9) float32, per frame
    meta: dict

    @property
    def average_lighting(self) -> np.ndarray:
        """(3, 9): the light the albedo was brought to."""
        return np.nanmean(self.lighting, axis=0)


def load_texture(folder: Path) -> Texture:
    folder = Path(folder)
    meta = read_meta(folder, TEXTURE_FORMAT, TEXTURE_VERSION, "texture")
    albedo = cv2.imread(str(folder / "albedo.png"), cv2.IMREAD_COLOR)
    try:
        lighting = np.load(folder / "lighting.npy")
    except (OSError, ValueError) as exc:
        raise FaceGraftError(f"{folder / 'lighting.npy'}: unreadable (run Texture again)"
                             ) from exc
    if albedo is None:
        raise FaceGraftError(f"{folder / 'albedo.png'}: missing or not an image")
    return Texture(folder, to_linear(albedo[..., ::-1]), lighting.astype(np.float32), meta)


def shading(normals: np.ndarray, lighting: np.ndarray) -> np.ndarray:
    """(..., 3) shading of unit normals under one frame's coefficients (3, 9)."""
    return np.maximum(sh_basis(normals) @ lighting.T, 0)


def relight(normals: np.ndarray, lighting: np.ndarray, base: np.ndarray) -> np.ndarray:
    """(..., 3) ratio of the shading under ``lighting`` to the shading under ``base``, each
    at least ``SHADING_FLOOR``."""
    ratio = np.maximum(shading(normals, lighting), SHADING_FLOOR) / np.maximum(
        shading(normals, base), SHADING_FLOOR)
    return np.clip(ratio, 1 / MAX_RELIGHT, MAX_RELIGHT)


def look_up(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``image`` (an albedo or another map in the UV layout) at each pixel of a UV guide
    (encoded as stored), bilinear."""
    size = image.shape[0]
    uv = decode_uv(uv)
    x = (uv[..., 0] * size - 0.5).astype(np.float32)
    y = ((1 - uv[..., 1]) * size - 0.5).astype(np.float32)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def render_face(texture: Texture, uv: np.ndarray, normals: np.ndarray, region: np.ndarray,
                lighting: np.ndarray) -> np.ndarray:
    """``texture``'s albedo rendered through a frame's guides (encoded as stored) under a
    frame's ``lighting`` (3, 9): sRGB uint8 (H, W, 3), black where there is no face and in
    the mouth's interior."""
    colour = look_up(texture.albedo, uv)
    face = (region > 0) & (region != REGION_LABELS["mouth_interior"])
    ratio = relight(decode_normals(normals), lighting, texture.average_lighting)
    lit = colour * broad_relighting(ratio, face)
    return np.where(face[..., None], to_srgb(lit), 0).astype(np.uint8)


def broad_relighting(ratio: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The relighting ratio (H, W, 3) blurred over the face (H, W) to its broad changes.
    The coarse mesh's normals turn sharply where the albedo's own shading does not (the
    eye sockets' rims, the bridge of the nose): relit there as they are, a source lit from
    above got bright crescents over the eyes under a frontal plate light, which the
    network, trained on its own frames' mild ratios, copied into the swap."""
    sigma = RELIGHT_BLUR * np.sqrt(max(int(face.sum()), 1))
    if sigma < 0.5:
        return ratio
    return blur_within(ratio, face, sigma)


def blur_within(image: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    """``image`` (H, W) or (H, W, C) Gaussian-blurred by ``sigma`` from the pixels of
    ``mask`` (H, W) alone: each pixel the mask-weighted mean of its neighbourhood, so what
    lies outside the mask (black, another region) does not bleed in at its edges."""
    weight = mask.astype(np.float32)
    coverage = np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), 1e-3)
    if image.ndim == 3:
        weight, coverage = weight[..., None], coverage[..., None]
    return cv2.GaussianBlur(image * weight, (0, 0), sigma) / coverage


def make_texture(shot: Path, role: str = "plate", size: int = 256, progress_mode: str = "bar",
                 force: bool = False) -> Path:
    """The texture of ``role`` from its track, its dataset at ``size`` and its footage."""
    footage = ShotLayout(shot).footage(role)
    track = load_track_with_faces(footage.track)
    data = load_dataset(footage.dataset(size))
    folder = footage.texture
    artist = _artist_albedo(folder)
    key = hashlib.sha256(json.dumps([track.meta.get("inputs_key"),
                                     data["meta"].get("inputs_key"),
                                     artist and hashlib.sha256(artist[0]).hexdigest(),
                                     TEXTURE_VERSION, TEXTURE_SIZE, revision("texture")]
                                    ).encode()).hexdigest()
    if not force and is_up_to_date(folder, key, texture_is_complete):
        Progress("texture", 1, progress_mode).finish(output=str(folder), skipped=True)
        return folder
    progress = Progress("texture", 3, progress_mode)
    lighting = fit_lighting(data, track.fps)
    progress.update(1)
    if artist is not None:
        albedo, coverage = None, artist[1]
    else:
        albedo, coverage = unwrap_albedo(track, lighting)
    progress.update(2)
    with written_folder(folder, progress) as partial:
        if artist is not None:  # the artist's file exactly as they saved it
            (partial / "albedo.png").write_bytes(artist[0])
        else:
            _write_png(partial / "albedo.png", to_srgb(albedo)[..., ::-1])
        _write_png(partial / "coverage.png", coverage)
        np.save(partial / "lighting.npy", lighting)
        (partial / "meta.json").write_text(json.dumps({
            "format": TEXTURE_FORMAT, "version": TEXTURE_VERSION, "size": TEXTURE_SIZE,
            "frame_count": track.frame_count, "inputs_key": key,
            "albedo_sha256": sha256_of(partial / "albedo.png"),
            "albedo_by": "artist" if artist is not None else "facegraft"}, indent=1))
    progress.finish(output=str(folder))
    return folder


def _artist_albedo(folder: Path) -> tuple[bytes, np.ndarray] | None:
    """An albedo an artist painted over FaceGraft's in the texture folder (its bytes, kept
    for the new folder) and the folder's coverage; None when the albedo is FaceGraft's."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        data = (folder / "albedo.png").read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("albedo_by") != "artist" and \
            hashlib.sha256(data).hexdigest() == meta.get("albedo_sha256"):
        return None
    # A changed albedo is an artist's: never replaced. One that cannot be read is not
    # silently painted over either; the artist restores it or deletes the folder.
    if not png_is_complete(folder / "albedo.png"):
        raise FaceGraftError(f"{folder / 'albedo.png'}: changed since FaceGraft wrote it and "
                             f"not a whole PNG; restore it, or delete the folder to make it "
                             f"again")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape[:2] != (TEXTURE_SIZE, TEXTURE_SIZE):
        raise FaceGraftError(f"{folder / 'albedo.png'}: an edited albedo must stay a "
                             f"{TEXTURE_SIZE}x{TEXTURE_SIZE} image")
    coverage = cv2.imread(str(folder / "coverage.png"), cv2.IMREAD_GRAYSCALE)
    if coverage is None:
        coverage = np.full((TEXTURE_SIZE, TEXTURE_SIZE), 255, np.uint8)
    return data, coverage


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise FaceGraftError(f"{path}: could not write (disk full or not writable?)")


def fit_lighting(data: dict, fps: float) -> np.ndarray:
    """Per-frame shading coefficients (N, 3, 9) from the dataset's crops and guide normals,
    taking the skin for one colour. Smoothed over time, normalised to average 1, absent
    frames held from their neighbours."""
    n = data["meta"]["frame_count"]
    lighting = np.full((n, 3, 9), np.nan, np.float32)
    rows = np.flatnonzero(np.asarray(data["present"]))
    # The light changes slowly: a few fits a second, smoothed over the rest, are enough.
    for row in rows[::max(1, len(rows) // LIGHT_FITS)]:
        region = np.asarray(data["region"][row])
        normals = decode_normals(np.asarray(data["normals"][row]))
        use = (region == SKIN) & (normals[..., 2] > 0.2)
        if use.sum() < 50:
            continue
        colour = to_linear(np.asarray(data["rgb"][row]))[use]
        basis = sh_basis(normals[use])
        for c in range(3):
            lighting[row, c] = _ridge_fit(basis, colour[:, c])
    return _normalised(_smoothed(lighting, LIGHT_SMOOTHING_S * fps), data)


def _ridge_fit(basis: np.ndarray, values: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    gram = basis.T @ basis + ridge * len(values) * np.eye(basis.shape[1])
    return np.linalg.solve(gram, basis.T @ values)


def _smoothed(lighting: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted average over neighbouring fitted frames (absent ones take theirs)."""
    known = np.flatnonzero(~np.isnan(lighting[:, 0, 0]))
    if len(known) == 0:
        raise FaceGraftError("no frame shows enough of the face to fit its light")
    out = np.empty_like(lighting)
    for row in range(len(lighting)):
        weights = np.exp(-0.5 * ((known - row) / max(sigma, 1e-3)) ** 2)
        if weights.sum() < 1e-6:
            weights = (known == known[np.argmin(np.abs(known - row))]).astype(np.float64)
        out[row] = np.tensordot(weights / weights.sum(), lighting[known], axes=1)
    return out


def _normalised(lighting: np.ndarray, data: dict) -> np.ndarray:
    """Scale each channel so the shading averages 1 over the face of a few frames."""
    rows = np.flatnonzero(np.asarray(data["present"]))
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), 32)).round().astype(int)]
    means = []
    for row in rows:
        region = np.asarray(data["region"][row])
        normals = decode_normals(np.asarray(data["normals"][row]))[np.isin(region, LIT_REGIONS)]
        means.append(shading(normals, lighting[row]).mean(axis=0))
    scale = np.maximum(np.mean(means, axis=0), 1e-4)
    return (lighting / scale[None, :, None]).astype(np.float32)


@dataclass(frozen=True)
class TexelMap:
    """The covered texels of a UV layout of ``size``: flat index into (size, size), the
    triangle's three vertices, barycentric weights and the triangle's region label."""

    size: int
    index: np.ndarray  # (K,)
    corners: np.ndarray  # (K, 3)
    bary: np.ndarray  # (K, 3)
    region: np.ndarray  # (K,)

    def interpolate(self, values: np.ndarray) -> np.ndarray:
        """Per-vertex values (V, C) at every texel (K, C)."""
        b = self.bary
        return (values[self.corners[:, 0]] * b[:, 0:1] + values[self.corners[:, 1]] * b[:, 1:2]
                + values[self.corners[:, 2]] * b[:, 2:3])

    def scatter(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((self.size * self.size, *values.shape[1:]), fill, np.float32)
        out[self.index] = values
        return out.reshape(self.size, self.size, *values.shape[1:])


@functools.lru_cache(maxsize=4)
def texel_map(size: int) -> TexelMap:
    mesh = load_canonical_mesh()
    triangles = mesh.triangles.astype(np.int64)
    xy = np.stack([mesh.uvs[:, 0] * size, (1 - mesh.uvs[:, 1]) * size], axis=1)
    raster = rasterize(xy, np.ones(len(xy)), triangles, size)
    flat = raster.triangle.reshape(-1)
    index = np.flatnonzero(flat >= 0)
    tri = flat[index]
    return TexelMap(size, index, triangles[tri], raster.weights.reshape(-1, 3)[index],
                    GuideRenderer(64).triangle_region[tri])


def working_size(track: Track) -> int:
    """The texel resolution the footage can fill: about two texels per pixel of the face,
    256 to TEXTURE_SIZE (the albedo is stored at TEXTURE_SIZE)."""
    points = track.landmarks[track.present, :NUM_MESH_VERTICES, :2]
    width = float(np.median(np.ptp(points[..., 0], axis=1)))
    size = 2 ** int(np.ceil(np.log2(max(width * 2.0, 1.0))))
    return int(np.clip(size, 256, TEXTURE_SIZE))


def unwrap_albedo(track: Track, lighting: np.ndarray) -> tuple:
    """The albedo (T, T, 3) linear and its coverage (uint8) from full-resolution frames."""
    info = probe_video(Path(track.meta["video"]))
    rows = np.flatnonzero(track.present)
    rows = rows[np.linspace(0, len(rows) - 1, min(len(rows), ALBEDO_FRAMES)).round().astype(int)]
    texels = texel_map(working_size(track))
    average = np.nanmean(lighting, axis=0)
    total, weight = _accumulate(info, track, rows, lighting, average, texels, None)
    mean = total / np.maximum(weight, 1e-6)[:, None]
    total, weight = _accumulate(info, track, rows, lighting, average, texels, mean)  # robust
    albedo = texels.scatter(total / np.maximum(weight, 1e-6)[:, None])
    albedo, coverage = fill_gaps(albedo, texels.scatter(weight))
    if texels.size != TEXTURE_SIZE:
        albedo = cv2.resize(albedo, (TEXTURE_SIZE, TEXTURE_SIZE), interpolation=cv2.INTER_CUBIC)
        coverage = cv2.resize(coverage, (TEXTURE_SIZE, TEXTURE_SIZE),
                              interpolation=cv2.INTER_LINEAR)
    return albedo.astype(np.float32), coverage


def _accumulate(info, track: Track, rows: np.ndarray, lighting: np.ndarray,
                average: np.ndarray, texels: TexelMap, mean: np.ndarray | None) -> tuple:
    """Weighted sums over ``rows`` of each texel's colour brought to the ``average`` light;
    with ``mean``, samples far from it count less (occluders, specular highlights)."""
    total = np.zeros((len(texels.index), 3), np.float32)
    weight = np.zeros(len(texels.index), np.float32)
    wanted = set(rows.tolist())
    start = int(track.meta["start"])
    for index, frame in read_frames(info, start + int(rows.min()), start + int(rows.max()) + 1):
        row = index - start
        if row not in wanted:
            continue
        sample = _texel_samples(frame, track, row, texels)
        if sample is None:
            continue
        colour, normals, w = sample
        delit = colour * relight(normals, average, lighting[row])
        if mean is not None:
            distance = np.abs(delit - mean).sum(axis=1)
            w = w / (1 + (distance / 0.1) ** 2)
        total += delit * w[:, None]
        weight += w
    return total, weight


def _texel_samples(frame: np.ndarray, track: Track, row: int, texels: TexelMap) -> tuple | None:
    """One frame's linear colour, camera-space normal and weight at every covered texel."""
    triangles = load_canonical_mesh().triangles.astype(np.int64)
    pixels = track.landmarks[row, :NUM_MESH_VERTICES, :2].astype(np.float32)
    camera = transform_points(track.head_matrix[row].astype(np.float64),
                              track.metric_landmarks[row, :NUM_MESH_VERTICES].astype(np.float64))
    camera = camera.astype(np.float32)
    at = texels.interpolate(pixels)
    colour = sample_points(frame, at)
    n = texels.interpolate(vertex_normals(camera, triangles))
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    points = texels.interpolate(camera)
    facing = -(n * points).sum(axis=1) / np.maximum(np.linalg.norm(points, axis=1), 1e-9)
    visible = _visible(pixels, -camera[:, 2], triangles, at, -points[:, 2])
    # Grazing views smear the background into the face's rim: they count little or nothing.
    w = np.clip((facing - 0.2) / 0.8, 0, 1) ** 2 * visible * float(track.confidence[row])
    names = track.meta["blendshape_names"]
    blink = max(track.blendshapes[row, names.index("eyeBlinkLeft")],
                track.blendshapes[row, names.index("eyeBlinkRight")])
    w[texels.region == REGION_LABELS["eyes"]] *= (1 - blink) ** 3
    calm = np.exp(-4 * float(np.mean(track.blendshapes[row])))
    w[np.isin(texels.region, (REGION_LABELS["lips"], REGION_LABELS["mouth_interior"]))] *= \
        calm ** 2
    if not w.any():
        return None
    return to_linear(colour), n, w.astype(np.float32)


def sample_points(image: np.ndarray, xy: np.ndarray, width: int = 1024) -> np.ndarray:
    """Bilinear samples of ``image`` at pixel positions (K, 2) (centres at +0.5)."""
    count = len(xy)
    padded = np.zeros((-(-count // width) * width, 2), np.float32)
    padded[:count] = xy - 0.5
    grid = padded.reshape(-1, width, 2)
    out = cv2.remap(image, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, *image.shape[2:])[:count]


def _visible(pixels: np.ndarray, depth: np.ndarray, triangles: np.ndarray, at: np.ndarray,
             texel_depth: np.ndarray, size: int = 192, tolerance_cm: float = 0.6) -> np.ndarray:
    """Whether each texel is the nearest surface where it lands (a small z-buffer)."""
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    scale = (size - 2) / max(float((high - low).max()), 1.0)
    raster = rasterize((pixels - low) * scale + 1, depth, triangles, size)
    ij = np.clip(((at - low) * scale + 1).astype(int), 0, size - 1)
    nearest = raster.depth[ij[:, 1], ij[:, 0]]
    return (texel_depth <= nearest + tolerance_cm).astype(np.float32)


MIRROR_WEIGHT = 0.1  # how much a texel's mirror image counts beside the texel itself


def fill_gaps(albedo: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Texels few frames saw take their mirror image (the UV layout is left-right
    symmetric), blended by weight so no seam shows; what neither side saw is filled
    smoothly. Returns the albedo and its coverage (uint8)."""
    scale = np.percentile(weight[weight > 0], 90)
    own, mirror = weight / scale, weight[:, ::-1] / scale * MIRROR_WEIGHT
    total = own + mirror
    mixed = (albedo * own[..., None] + albedo[:, ::-1] * mirror[..., None]) / \
        np.maximum(total, 1e-6)[..., None]
    known = np.clip(total / 0.05, 0, 1).astype(np.float32)  # soft: no hard edge
    filled = _push_pull(mixed * known[..., None], known)
    albedo = mixed * known[..., None] + filled * (1 - known[..., None])
    return albedo, np.round(np.clip(total, 0, 1) * 255).astype(np.uint8)


def _push_pull(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill where ``weight`` is 0 with a weighted image pyramid (pull down, push up)."""
    if min(weight.shape) <= 1:
        mean = values.reshape(-1, 3).sum(0) / max(weight.sum(), 1e-6)
        return np.broadcast_to(mean, values.shape).copy()
    small_v = cv2.resize(values, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    small_w = cv2.resize(weight, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    coarse = _push_pull(small_v, small_w)
    up = cv2.resize(coarse, (weight.shape[1], weight.shape[0]), interpolation=cv2.INTER_LINEAR)
    w = np.clip(weight, 0, 1)[..., None]
    own = values / np.maximum(weight, 1e-6)[..., None]
    return own * w + up * (1 - w)
