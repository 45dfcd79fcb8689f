"""Synthetic occluders: hands, bars, discs and blobs pasted over training crops, so the
model learns what stands in front of a face and the occlusion head learns to see it.

Each occluder is a shape (its mask, anti-aliased) filled with a texture: a patch of a
donor crop (the face's own skin, as a hand in front of it, or the other person's face and
background), a flat colour with a gradient, or noise. Everything random comes from one
``numpy`` generator per crop, seeded by the training step and the crop's place in the
batch, so resumed training (and training split over several processes) draws the same
occluders.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("hand", "bar", "disc", "blob")


def _hand(rng: np.random.Generator, size: int) -> np.ndarray:
    """A palm (ellipse) with four fingers and a thumb (thick lines), at a random pose."""
    mask = np.zeros((size, size), np.uint8)
    scale = size * rng.uniform(0.25, 0.45)
    centre = rng.uniform(0.1, 0.9, 2) * size
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    side = np.array([-direction[1], direction[0]])
    cv2.ellipse(mask, tuple(int(v) for v in centre), (int(scale * 0.45), int(scale * 0.55)),
                np.degrees(angle) + 90, 0, 360, 255, -1, cv2.LINE_AA)
    for k, offset in enumerate(np.linspace(-0.32, 0.32, 4)):
        base = centre + direction * scale * 0.4 + side * scale * offset
        spread = direction + side * offset * rng.uniform(0.0, 0.8)
        tip = base + spread / np.linalg.norm(spread) * scale * rng.uniform(0.5, 0.8) * (
            0.8 if k in (0, 3) else 1.0)
        cv2.line(mask, tuple(int(v) for v in base), tuple(int(v) for v in tip), 255,
                 max(2, int(scale * 0.16)), cv2.LINE_AA)
    thumb = centre + side * scale * 0.45
    tip = thumb + (side * 0.8 + direction * 0.6) * scale * 0.5
    cv2.line(mask, tuple(int(v) for v in thumb), tuple(int(v) for v in tip), 255,
             max(2, int(scale * 0.18)), cv2.LINE_AA)
    return mask


def _bar(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    centre = rng.uniform(0.2, 0.8, 2) * size
    angle = rng.uniform(0, 180)
    length, width = size * rng.uniform(0.8, 1.6), size * rng.uniform(0.06, 0.2)
    box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(length), float(width)),
                         float(angle)))
    cv2.fillPoly(mask, [np.round(box * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask


def _disc(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    centre = rng.uniform(0.1, 0.9, 2) * size
    radius = size * rng.uniform(0.1, 0.3)
    cv2.circle(mask, tuple(int(v * 16) for v in centre), int(radius * 16), 255, -1,
               cv2.LINE_AA, 4)
    return mask


def _blob(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random star-shaped polygon (a microphone, hair, a sleeve...)."""
    centre = rng.uniform(0.15, 0.85, 2) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 10)))
    radii = size * rng.uniform(0.08, 0.3, len(angles))
    points = centre + np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask


SHAPES = {"hand": _hand, "bar": _bar, "disc": _disc, "blob": _blob}


def occluder_mask(rng: np.random.Generator, size: int, kind: str | None = None) -> np.ndarray:
    """An occluder's coverage (size, size) float32 in 0..1."""
    kind = kind or KINDS[rng.integers(len(KINDS))]
    return SHAPES[kind](rng, size).astype(np.float32) / 255


def occluder_texture(rng: np.random.Generator, size: int, donor: np.ndarray | None
                     ) -> np.ndarray:
    """What the occluder looks like (size, size, 3) uint8: a shifted patch of ``donor`` (a
    crop of another frame or the other person), or a shaded flat colour."""
    choice = rng.uniform()
    if choice < 0.6 and donor is not None:
        shift = rng.integers(-size // 2, size // 2 + 1, 2)
        patch = np.roll(donor, tuple(shift), axis=(0, 1))
        return patch if rng.uniform() < 0.5 else patch[:, ::-1]
    colour = rng.uniform(0, 255, 3)
    ramp = np.linspace(rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0), size)[:, None, None]
    texture = colour * ramp
    if choice > 0.85:
        texture = texture + rng.normal(0, 20, (size, size, 3))
    return np.clip(texture, 0, 255).astype(np.uint8)


def paste_occluders(images: np.ndarray, face: np.ndarray, rngs: list[np.random.Generator],
                    donors: np.ndarray | None, chance: float = 0.5
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Occlude about ``chance`` of the crops (N, S, S, 3) float32 in 0..1 (``face``: their
    face masks, ``rngs``: one generator per crop, ``donors``: one uint8 crop per crop to cut
    textures from). Returns the crops and the occluders' coverage (N, S, S) float32; an
    occluder always covers some of the face. Each crop's occluder depends only on its own
    generator and donor, so a batch split over several processes draws the same ones."""
    images = images.copy()
    size = images.shape[1]
    coverage = np.zeros(images.shape[:3], np.float32)
    for i, rng in enumerate(rngs):
        if rng.uniform() >= chance:
            continue
        for _ in range(8):  # retry until it covers 3 to 60 % of the face
            mask = occluder_mask(rng, size)
            covered = (mask * face[i]).sum() / max(face[i].sum(), 1)
            if 0.03 <= covered <= 0.6:
                break
        donor = None if donors is None else donors[i]
        texture = occluder_texture(rng, size, donor).astype(np.float32) / 255
        images[i] = images[i] * (1 - mask[..., None]) + texture * mask[..., None]
        coverage[i] = mask
    return images, coverage
