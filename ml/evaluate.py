"""``facegraft eval``: numbers for swapped faces.

Per swap (one per run, so the guidance-off ablation sits in the same report):

- ``ssim``, ``psnr``: against the target's own frames inside the face mask. Meaningful for
  self-reenactment (source and target are the same person, held-out frames).
- ``landmark_nme``: MediaPipe's landmarks of the output (the swapped face over the
  target's crop) against the target's tracked landmarks, mean distance over the 468 mesh
  landmarks divided by the inter-ocular distance: does the output keep the plate's
  expression and pose?
- ``jitter_ratio``: frame-to-frame jitter of the output's landmarks (in plate pixels)
  over the jitter of the plate's own raw landmarks: 1 means the swap shakes as much as
  the footage.
- ``identity_distance_to_source`` / ``_to_target``: dlib's face-recognition distance (an
  optional extra: null with a reason when dlib or its models are not installed).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..common.atomic import write_bytes_atomic
from ..common.crop import apply, invert
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.profiles import get_profile
from ..common.shot_layout import FootageFolder, ShotLayout
from ..common.swap_file import load_swap
from ..common.track_file import load_track
from .losses import ssim_map
from .track_quality import jitter_px

LANDMARK_SIZE = 256  # outputs are scaled to this before MediaPipe looks at them


def _composite(swap_rgba: np.ndarray, plate_rgb: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The swapped face over the plate's crop on the face's geometric mask, so that the
    metrics judge the generated face, not plate pixels showing through a soft alpha."""
    return np.where(face[..., None], swap_rgba[..., :3], plate_rgb)


def _detect_landmarks(images: np.ndarray) -> np.ndarray:
    """MediaPipe (VIDEO mode, in order) on (N, R, R, 3) crops: (N, 478, 2) crop pixels,
    NaN where no face is found."""
    from ..common.quiet_stderr import quiet_native_stderr
    from .landmarker import create_landmarker, detect

    size = images.shape[1]
    out = np.full((len(images), 478, 2), np.nan)
    with quiet_native_stderr():
        landmarker = create_landmarker(1)
    for i, image in enumerate(images):
        big = cv2.resize(image, (LANDMARK_SIZE, LANDMARK_SIZE), interpolation=cv2.INTER_CUBIC)
        faces = detect(landmarker, big, i * 40)
        if faces:
            out[i] = faces[0].landmarks[:, :2] * size / LANDMARK_SIZE
    landmarker.close()
    return out


def swap_metrics(plate: FootageFolder, swap_folder: Path, self_reenactment: bool,
                 source: FootageFolder | None = None) -> dict:
    swapped = load_swap(swap_folder)
    size = swapped["meta"]["resolution"]
    data = load_dataset(plate.dataset(size))
    track = load_track(plate.track)
    rows = np.flatnonzero(swapped["present"])
    if len(rows) == 0:
        raise FaceGraftError(f"{swap_folder}: no swapped frames")
    started = time.perf_counter()
    rgba = np.asarray(swapped["rgba"][rows])
    plate = np.asarray(data["rgb"][rows])
    mask = np.asarray(data["mask"][rows]) > 0
    out = {"frames": int(len(rows)), "model": swapped["meta"]["model"],
           "use_guides": swapped["meta"]["use_guides"], "guides": swapped["meta"]["guides"]}
    if self_reenactment:
        a = torch.from_numpy(rgba[..., :3]).permute(0, 3, 1, 2).float() / 255
        b = torch.from_numpy(plate).permute(0, 3, 1, 2).float() / 255
        m = torch.from_numpy(mask).unsqueeze(1).float()
        ssim = (ssim_map(a, b) * m).sum() / m.sum()
        mse = (((a - b) ** 2).mean(dim=1, keepdim=True) * m).sum() / m.sum()
        out["ssim"] = float(ssim)
        out["psnr"] = float(10 * math.log10(1 / max(float(mse), 1e-12)))
    composite = _composite(rgba, plate, mask)
    found = _detect_landmarks(composite)
    crops = np.asarray(data["crops"][rows])
    truth = apply(crops, track.landmarks[rows, :, :2])
    ok = ~np.isnan(found[:, 0, 0])
    iod = np.linalg.norm(truth[:, 263] - truth[:, 33], axis=-1)
    error = np.linalg.norm(found[:, :468] - truth[:, :468], axis=-1).mean(axis=1) / iod
    out["landmark_nme"] = float(np.mean(error[ok])) if ok.any() else None
    out["landmark_detected_fraction"] = float(ok.mean())
    # Jitter in plate pixels over consecutive frames of the output.
    in_plate = np.full((track.frame_count, 478, 2), np.nan)
    in_plate[rows[ok]] = apply(invert(crops[ok]), found[ok])
    plate_jitter = jitter_px(track.landmarks_raw[rows[0]:rows[-1] + 1])
    out["jitter_ratio"] = float(jitter_px(in_plate[rows[0]:rows[-1] + 1]) / plate_jitter)
    sample = np.linspace(0, len(rows) - 1, min(len(rows), 24)).round().astype(int)
    source_frames = None
    if source is not None:
        source_data = load_dataset(source.dataset(size))
        present = np.flatnonzero(np.asarray(source_data["present"]))
        picks = present[np.linspace(0, len(present) - 1, 24).round().astype(int)]
        source_frames = np.asarray(source_data["rgb"][picks])
    out.update(identity_distances(composite[sample], source_frames, plate[sample]))
    out["seconds"] = round(time.perf_counter() - started, 2)
    return out


def _identity_embedder():
    """dlib's face-recognition ResNet, or None with the reason it is unavailable."""
    try:
        import dlib
    except ImportError:
        return None, "dlib not installed (optional: pip install dlib-bin==20.0.1)"
    from ..common.samples import sample_path

    try:
        predictor = dlib.shape_predictor(str(sample_path("shape_predictor_5_face_landmarks.dat")))
        resnet = dlib.face_recognition_model_v1(
            str(sample_path("dlib_face_recognition_resnet_model_v1.dat")))
    except FaceGraftError as exc:
        return None, f"{exc} --identity-model"
    detector = dlib.get_frontal_face_detector()

    def embed(rgb: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(cv2.resize(rgb, (LANDMARK_SIZE, LANDMARK_SIZE)))
        boxes = detector(image, 1)
        if not boxes:
            return None
        shape = predictor(image, boxes[0])
        return np.asarray(resnet.compute_face_descriptor(image, shape))

    return embed, ""


def identity_distances(outputs: np.ndarray, source_frames: np.ndarray | None,
                       target_frames: np.ndarray) -> dict:
    """Mean dlib distance of the outputs to each person's mean embedding."""
    embed, reason = _identity_embedder()
    keys = ("identity_distance_to_source", "identity_distance_to_target")
    if embed is None or source_frames is None:
        return dict.fromkeys(keys) | {"identity_note": reason or "no --source given"}

    def mean_embedding(frames):
        found = [e for e in (embed(f) for f in frames) if e is not None]
        return np.mean(found, axis=0) if found else None

    people = (mean_embedding(source_frames), mean_embedding(target_frames))
    found = [e for e in (embed(f) for f in outputs) if e is not None]
    if not found or any(p is None for p in people):
        return dict.fromkeys(keys) | {"identity_note": "dlib found no face"}
    return {key: float(np.mean([np.linalg.norm(e - person) for e in found]))
            for key, person in zip(keys, people, strict=True)}


def evaluate_shot(shot: Path, profile: str = "cpu", self_reenactment: bool = False) -> Path:
    """``facegraft eval``: the figures of the shot's swap of ``profile`` in eval.json."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    report = {"shot": str(layout.root), "profile": name, "self_reenactment": self_reenactment,
              "metrics": swap_metrics(layout.plate, layout.swap(name), self_reenactment,
                                      layout.source)}
    write_bytes_atomic(layout.eval_report, json.dumps(report, indent=1).encode())
    return layout.eval_report
