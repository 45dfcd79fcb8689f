"""What stands in front of the plate's face, seen as what does not look like that face.

The plate's texture (its albedo in the canonical UV layout, built robustly from all of its
frames) rendered through each frame's own guides under that frame's light is what the
face would look like there with nothing in front of it (its exposure matched to the frame
by the face's commonest brightness ratio, which an occluder over a third of the face does
not move). Where the crop's colour is far from that render, or the crop has an edge the
render lacks (the outline and shade of a finger the skin's own colour), something else is
there: a hand, a prop, hair. This needs no training, so it sees occluders unlike the
synthetic ones the occlusion head learns from; the swap stage takes the larger of the two
mattes, less the head's parts that this judgement finds to be the face.

Where the render cannot be trusted the cue stays silent: the face's outline itself (a
pixel wide at 128 px, where the blurred background bleeds in; a hand's fingertips by the
outline are judged), the mouth's interior (teeth and tongue come and go), the eyes with
their lids and corners, open or shut (a shut eye has no eye region left on the mesh, and its
lashes and the creases of a laugh are not in the texture), and the nose's tip, which
shines. Edges are judged on the skin alone, away from the eyes, brows, nostrils and the
folds a smile deepens, whose edges the texture draws softer than any frame has them. Thin
and small disagreements (a feature's edge a pixel off, a highlight) are dropped. What
remains are seeds: a graph cut (GrabCut) on the crop's colours grows each over the pixels
that look like it, including the rim, eyes and mouth the cue could not judge, and stops
where the face is certainly the face, so the part of a prop over the rim or past the
face's outline is kept with it.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ..common.canonical_mesh import load_canonical_mesh
from ..common.face_regions import (
    LEFT_BROW,
    LEFT_EYE,
    LEFT_FOLD,
    LIPS_OUTER,
    LOWER_NOSE,
    NOSE_TIP,
    RIGHT_BROW,
    RIGHT_EYE,
    RIGHT_FOLD,
)
from ..common.guides_file import REGION_LABELS
from ..pipeline.texture import Texture, look_up, render_face, to_linear, to_srgb

# Colour distance (8-bit Lab, lightness counted a quarter: the plate's light is only
# fitted, and a laugh or a squint changes the cheeks' shading, not their hue) above which
# a pixel is not the face, and under which (or under the judged face's median) a pixel is
# the face for sure (the graph cut may not take it). Chosen, with the smallest seed and
# the blur (a 128th of the crop: a finger is 4-6 px wide at 128 px), where the frames of
# the clean dev plates (man B talking and smiling, man C in a car) get no matte and man A
# laughing with his eyes shut 0.02 % (README.md, the occlusion's known limit).
DISTANCE_THRESHOLD = 8.0
FACE_DISTANCE = 3.0
LIGHTNESS_WEIGHT = 0.25
SMALLEST_SEED = 0.005  # of the crop's pixels
# A smaller seed counts when it is on average this far from the render: a fingertip or the
# edge of a bar over the cheek, next to the face's outline, where the rest of the occluder
# is not judged. Chosen on the dev plates' 128 px crops: the fingertips of the occluded
# pair's first hand (frames 11-17: parts of 43-61 px, on average 11.4-11.9 from the render)
# count, and its matte's IoU (cue and head) is 0.83 instead of 0.73 (0.81 at 11.5); on the
# clean plates only man C's hairline over his forehead is marked, in 1 of 60 frames (under 2
# % of the face), as at 12; at 11.0 man A's laughing frames get a 6 % mark (his hair at the
# temple, parts of 17-40 px at 11-14.6), at 10.5 a 14 % one.
SMALL_SEED = 0.0025
SMALL_SEED_DISTANCE = 11.3
UNTRUSTED_REGIONS = (REGION_LABELS["mouth_interior"], REGION_LABELS["eyes"])
# Each eye's rim in the UV layout, widened about its centre this much (across, up and
# down): the lids, the lashes and the corners' creases, wherever the lids are.
EYE_ZONE_SCALE = (1.6, 2.6)
# An eye is shut when its region fills less of its zone than this (open: 13-20 % on man
# A's 128 px crops; shut or squeezed by a laugh: 0-5 %).
SHUT_EYE_SHARE = 0.1
# The crop's lightness edges that the render lacks (a finger's outline and the shade it
# casts, when its colour is the skin's) add this much distance per unit of Sobel gradient in
# excess. Judged on the skin alone, away from the zones whose edges the texture draws
# softer than a frame has them (``silenced_zones_in_uv``). Chosen on the dev plates' 128 px
# crops: the occluded pair's cue finds 0.73 of the occluders' pixels instead of 0.65
# (precision 0.96 against 0.95), and marks 0.02 % of man A's laughing face (as without)
# and 0.02 % of man C's (none without). 0.1 finds 0.75 at precision 0.94.
EDGE_WEIGHT = 0.08
FOLD_WIDTH = 0.08  # of the UV layout: a fold moves outwards as the cheek rises
# Each brow widened about its centre (across, up and down): brows rise and fall further than
# the mesh follows, and their hairs' edges are not in the texture.
BROW_ZONE_SCALE = (1.2, 3.0)
# The lips widened likewise: the mesh's mouth opens less far than a shout's or a vowel's,
# and the lower lip's edge then lies on the mesh's chin.
LIPS_ZONE_SCALE = (1.15, 1.8)
# The occlusion head's matte is taken where the judgement above agrees or cannot judge: a
# connected part of it at least this share judged (not the eyes, the mouth's interior, the
# nose's tip, the rim) whose judged pixels are on average nearer than ``HEAD_SUPPORT`` to the
# render is the face. An occlusion head still learning marks a moustache's shadow or a
# smile's fold (``make demo``'s 993 steps: 1.1 % of man B's clean face, 19 % of one frame).
# Chosen on the dev plates' 128 px crops: the head's parts over the occluded pair's pasted
# occluders average 8.7 to 12 there, its false parts on the demo's plate 5.4 to 7.0. At 7.5
# the demo's marks fall to none, man A's held-out frames' to 0.05 % (0.10 %), man C's car
# frames' to 0.25 % (0.39 %), and the occluded pair's IoU stays 0.684.
HEAD_JUDGED_SHARE = 0.3
HEAD_SUPPORT = 7.5
# The cue is coarse (it is blurred and opened at a few pixels): larger crops are judged at
# this size and the matte scaled back, so a 512 px model's swap pays what a 128 px one does.
WORKING_SIZE = 128
# The face's outline is judged up to this share of the crop from it (one pixel at 128 px,
# the blur's width, through which the background bleeds into the face's colours). A hand
# comes in from the side: its fingertips over the cheek lie by the outline. Chosen on the
# dev plates' 128 px crops: the occluded pair's cue finds IoU 0.72 instead of 0.69 (three
# pixels, as wide as the margin kept from the eyes and the mouth); man A's laughing frames
# get 0.03 % of the face marked (0.02 %), man C's 0.03 % (0.01 %); at the outline itself
# 0.75, and man A's face gets 0.5 % (his hair at the temples, a smile's fold).
OUTLINE_MARGIN = 1 / 128
# The exposure's brightness ratios (natural log) are binned this finely over -1..1, and
# the pixels within ``AGREEING_RATIO`` of the commonest one set the channels' gains.
# Chosen on the dev plates' 128 px crops: the occluded pair's cue finds IoU 0.69 for 0.08
# to 0.25 alike (0.60 with the median, which the disc and the hand holding man C's face
# threw: their frames 0.19-0.36 against 0.82-0.99); the clean plates' marks stay under
# 0.02 % of the face.
RATIO_BINS = 100
AGREEING_RATIO = 0.15
# The graph cut may take pixels up to this share of the crop from the face's outline: the
# occluder's part beyond the face then joins its colour model (a disc's hair, a hand's palm)
# and its part over the face is cut whole. Chosen on the occluded dev pair: its final
# frames' matte IoU 0.81 instead of 0.79 at an eighth (the disc's frames 0.90-0.96 against
# 0.80-0.85), 0.76 at a sixteenth; on its 128 px crops the same from a fifth to a half. The
# clean plates' marks are unchanged.
GROWTH_REACH = 1 / 5


def blurred_lab(image: np.ndarray, blur: float) -> np.ndarray:
    """An sRGB uint8 image as 8-bit Lab, float32 (H, W, 3), blurred so a sub-pixel
    misalignment of the texture does not count."""
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    return cv2.GaussianBlur(lab, (0, 0), blur)


def colour_distance(crop_lab: np.ndarray, render_lab: np.ndarray) -> np.ndarray:
    """Per-pixel distance (H, W) float32 of two ``blurred_lab`` images."""
    delta = crop_lab - render_lab
    delta[..., 0] *= LIGHTNESS_WEIGHT
    return np.sqrt((delta ** 2).sum(axis=2))


def exposed_like(render: np.ndarray, crop: np.ndarray, face: np.ndarray) -> np.ndarray:
    """``render`` with each channel scaled by its ratio to ``crop`` over the pixels of
    ``face`` that agree on it: the fitted light gets the face's overall brightness wrong
    when the head tilts into shadow or the exposure drifts. The ratio is the commonest one
    (the peak of the pixels' brightness ratios), not the median: an occluder over a third
    of the face, another face's skin or a hand, drags a median towards its own colour."""
    if face.sum() < 16:
        return render
    a, b = (to_linear(image[face]) for image in (crop, render))
    ratios = np.log(np.maximum(a, 1e-3)) - np.log(np.maximum(b, 1e-3))
    brightness = ratios.mean(axis=1)
    counts, edges = np.histogram(brightness, bins=RATIO_BINS, range=(-1.0, 1.0))
    counts = cv2.GaussianBlur(counts.astype(np.float32)[None], (0, 0), 2).ravel()
    peak = (edges[counts.argmax()] + edges[counts.argmax() + 1]) / 2
    agreeing = np.abs(brightness - peak) < AGREEING_RATIO
    if agreeing.sum() < 16:
        agreeing = np.ones(len(a), bool)
    gain = np.exp(np.median(ratios[agreeing], axis=0))
    return to_srgb(to_linear(render) * np.clip(gain, 0.5, 2.0))


def _uv_pixels(points: np.ndarray, size: int) -> np.ndarray:
    """(P, 2) canonical UVs as int32 pixel corners of a (size, size) UV image, in 16ths
    (OpenCV's drawing ``shift=4``)."""
    corners = np.stack([points[:, 0], 1 - points[:, 1]], axis=1) * size * 16
    return np.round(corners).astype(np.int32)


@functools.lru_cache(maxsize=1)
def eye_zones_in_uv(size: int = 256) -> tuple[np.ndarray, ...]:
    """Each eye's widened rim: float32 (size, size) maps in the UV layout, 1 inside."""
    return tuple(_widened_loop(loop, EYE_ZONE_SCALE, size) for loop in (RIGHT_EYE, LEFT_EYE))


def _widened_loop(loop: tuple[int, ...], scale: tuple[float, float], size: int) -> np.ndarray:
    """A closed loop of landmarks widened about its centre by ``scale`` (across, up and
    down), filled: float32 (size, size) in the UV layout."""
    rim = load_canonical_mesh().uvs[list(loop)]
    widened = (rim - rim.mean(axis=0)) * scale + rim.mean(axis=0)
    zone = np.zeros((size, size), np.float32)
    cv2.fillPoly(zone, [_uv_pixels(widened, size)], 1.0, shift=4)
    return zone


@functools.lru_cache(maxsize=1)
def silenced_zones_in_uv(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The nose's tip; and where edges are not judged: both eyes', brows' and the lips'
    zones, the lower nose and both nasolabial folds. float32 (size, size) maps in the UV
    layout, 1 inside."""
    uvs = load_canonical_mesh().uvs

    def hull(points: tuple[int, ...]) -> np.ndarray:
        zone = np.zeros((size, size), np.float32)
        cv2.fillPoly(zone, [cv2.convexHull(_uv_pixels(uvs[list(points)], size))], 1.0, shift=4)
        return zone

    brows = (_widened_loop(loop, BROW_ZONE_SCALE, size) for loop in (RIGHT_BROW, LEFT_BROW))
    lips = _widened_loop(LIPS_OUTER, LIPS_ZONE_SCALE, size)
    unjudged = sum(eye_zones_in_uv(size)) + hull(LOWER_NOSE) + sum(brows) + lips
    cv2.polylines(unjudged, [_uv_pixels(uvs[list(fold)], size)
                             for fold in (RIGHT_FOLD, LEFT_FOLD)],
                  False, 1.0, thickness=max(1, round(FOLD_WIDTH * size)), shift=4)
    return hull(NOSE_TIP), np.minimum(unjudged, 1.0)


def shut_eye_zones(uv: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(H, W) bool: the widened rim of each eye the mesh shows shut (its eye region fills
    under ``SHUT_EYE_SHARE`` of the rim). An open eye's own region already silences the cue;
    a shut one has none, while its lashes and a laugh's creases are not in the texture. An
    open eye's zone stays judged: a bar across the eyes is cut into seeds too small to
    count when every eye is silenced."""
    shut = np.zeros(region.shape, bool)
    eyes = region == REGION_LABELS["eyes"]
    for zone_in_uv in eye_zones_in_uv():
        zone = (look_up(zone_in_uv, uv) > 0.5) & (region > 0)
        if zone.any() and (eyes & zone).sum() < SHUT_EYE_SHARE * zone.sum():
            shut |= zone
    return shut


def lightness_edges(lab: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude (H, W) float32 of a ``blurred_lab`` image's lightness."""
    lightness = np.ascontiguousarray(lab[..., 0])
    return np.hypot(cv2.Sobel(lightness, cv2.CV_32F, 1, 0), cv2.Sobel(lightness, cv2.CV_32F, 0, 1))


def edge_excess(crop_lab: np.ndarray, render_lab: np.ndarray, judged: np.ndarray,
                blur: float) -> np.ndarray:
    """(H, W) float32: how much stronger the crop's lightness edges are than the render's
    (both ``blurred_lab``) where ``judged``, spread over a finger's width."""
    excess = np.maximum(lightness_edges(crop_lab) - lightness_edges(render_lab), 0)
    return cv2.GaussianBlur(np.where(judged, excess, 0), (0, 0), 2 * blur)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)


def seeds_of(disagrees: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """The disagreements (H, W) bool that stand for an occluder: one-pixel lines opened
    away, then only the connected parts of at least ``SMALLEST_SEED`` of the crop, or of
    ``SMALL_SEED`` and on average ``SMALL_SEED_DISTANCE`` from the render (``distance``)."""
    size = disagrees.shape[0]
    opened = cv2.morphologyEx(disagrees.astype(np.uint8), cv2.MORPH_OPEN,
                              _disc(max(1, round(size / 128))))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA]
    mean = np.bincount(labels.ravel(), distance.ravel(), count) / np.maximum(area, 1)
    kept = (area >= SMALLEST_SEED * size * size) | (
        (area >= SMALL_SEED * size * size) & (mean >= SMALL_SEED_DISTANCE))
    kept[0] = False
    return kept[labels]


def grown_seeds(crop: np.ndarray, seeds: np.ndarray, region: np.ndarray,
                surely_face: np.ndarray) -> np.ndarray:
    """``seeds`` (H, W) bool grown by GrabCut over the nearby pixels of ``crop`` that look
    like them, up to ``GROWTH_REACH`` of the crop past the face's ``region`` and never
    into ``surely_face``; only what stays connected to a seed."""
    size = crop.shape[0]
    reach = max(1, round(size * GROWTH_REACH))
    near_face = cv2.dilate((region > 0).astype(np.uint8), _disc(reach)) > 0
    near_seed = cv2.dilate(seeds.astype(np.uint8), _disc(max(1, round(size / 16)))) > 0
    core = cv2.erode(seeds.astype(np.uint8), _disc(1)) > 0
    labels = np.full(seeds.shape, cv2.GC_BGD, np.uint8)
    labels[near_face] = cv2.GC_PR_BGD
    labels[near_face & near_seed] = cv2.GC_PR_FGD
    labels[surely_face] = cv2.GC_BGD
    labels[core] = cv2.GC_FGD
    if core.sum() < 4 or (labels == cv2.GC_BGD).sum() < 4:
        return seeds
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global generator
    cv2.grabCut(np.ascontiguousarray(crop), labels, None, np.zeros((1, 65)),
                np.zeros((1, 65)), 2, cv2.GC_INIT_WITH_MASK)
    grown = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    count, parts = cv2.connectedComponents(grown, connectivity=8)
    kept = np.zeros(count, bool)
    kept[np.unique(parts[core])] = True
    kept[0] = False
    return kept[parts]


def inconsistency_matte(crop: np.ndarray, uv: np.ndarray, normals: np.ndarray,
                        region: np.ndarray, texture: Texture, lighting: np.ndarray,
                        head: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (H, W) 255 where the crop is not the plate's face as its texture renders it
    under the frame's ``lighting`` (3, 9), the guides as stored in a dataset; and (H, W)
    bool, the parts of the occlusion ``head``'s matte (uint8 (H, W), if given) that this
    judgement refutes."""
    size = crop.shape[0]
    margin = max(1, round(size / 40))  # from the untrusted zones: a feature's edge may move
    nose, unjudged = (look_up(zone, uv) > 0.5 for zone in silenced_zones_in_uv())
    untrusted = np.isin(region, UNTRUSTED_REGIONS) | shut_eye_zones(uv, region) | nose
    untrusted = cv2.dilate(untrusted.astype(np.uint8), _disc(margin))
    face = ((region > 0) & (untrusted == 0)).astype(np.uint8)
    render = exposed_like(render_face(texture, uv, normals, region, lighting), crop, face > 0)
    edges_judged = (region == REGION_LABELS["skin"]) & ~unjudged
    crop_lab, render_lab = (blurred_lab(image, size / 128) for image in (crop, render))
    distance = (colour_distance(crop_lab, render_lab)
                + EDGE_WEIGHT * edge_excess(crop_lab, render_lab, edges_judged, size / 128))
    refuted = (np.zeros((size, size), bool) if head is None
               else refuted_parts(head > 127, distance, face > 0))
    within = cv2.erode((region > 0).astype(np.uint8),
                       _disc(max(1, round(size * OUTLINE_MARGIN)))) > 0
    trusted = within & (cv2.dilate(untrusted, _disc(margin)) == 0)  # seeds: two margins off
    seeds = seeds_of((distance > DISTANCE_THRESHOLD) & trusted, distance)
    if not seeds.any():
        return np.zeros((size, size), np.uint8), refuted
    # Where the render fits the whole frame badly (a fit thrown by a large occluder), the
    # better half of the judged face is still the face: the cut may not take it either.
    surely = max(FACE_DISTANCE, float(np.median(distance[trusted])))
    grown = grown_seeds(crop, seeds, region, trusted & (distance < surely))
    return grown.astype(np.uint8) * 255, refuted


def refuted_parts(marked: np.ndarray, distance: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The connected parts of the occlusion head's ``marked`` (H, W) bool that look like the
    face: mostly ``judged`` and, there, on average nearer than ``HEAD_SUPPORT`` to the
    render (``distance`` (H, W))."""
    count, parts = cv2.connectedComponents(marked.astype(np.uint8), connectivity=8)
    refuted = np.zeros(count, bool)
    for part in range(1, count):
        inside = parts == part
        seen = inside & judged
        if seen.sum() >= HEAD_JUDGED_SHARE * inside.sum():
            refuted[part] = distance[seen].mean() < HEAD_SUPPORT
    return refuted[parts]


def inconsistency_mattes(data: dict, rows: np.ndarray, texture: Texture,
                         head: np.ndarray | None = None) -> np.ndarray:
    """``inconsistency_matte`` of the dataset ``data``'s ``rows`` (its own crops and
    guides, the texture's light of each row), judged at ``WORKING_SIZE`` at most: uint8
    (N, H, W). With ``head``, the occlusion head's mattes of the same rows (uint8
    (N, H, W)): the larger of the two, less the head's parts the judgement refutes."""
    size = data["rgb"].shape[1]
    work = min(size, WORKING_SIZE)

    def at_work(image: np.ndarray, smooth: bool) -> np.ndarray:
        if work == size:
            return image
        # Encoded guides (UV, normals, labels) are resampled, never blended.
        return cv2.resize(image, (work, work), interpolation=cv2.INTER_AREA if smooth
                          else cv2.INTER_NEAREST)

    def at_size(image: np.ndarray) -> np.ndarray:
        if work == size:
            return image
        return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)

    mattes = np.zeros((len(rows), size, size), np.uint8)
    for i, row in enumerate(rows):
        matte, refuted = inconsistency_matte(
            at_work(np.asarray(data["rgb"][row]), True),
            at_work(np.asarray(data["uv"][row]), False),
            at_work(np.asarray(data["normals"][row]), False),
            at_work(np.asarray(data["region"][row]), False), texture, texture.lighting[row],
            None if head is None else at_work(head[i], True))
        mattes[i] = at_size(matte)
        if head is not None:
            # The head's own matte at its full size, only its refuted parts taken out.
            kept = np.where(at_size(refuted.astype(np.uint8) * 255) > 127, 0, head[i])
            mattes[i] = np.maximum(mattes[i], kept)
    return mattes
