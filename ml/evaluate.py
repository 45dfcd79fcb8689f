"""``facegraft eval``: the figures a judge would look at, per frame and for the shot, in
``SHOT/eval.json``.

Measured on the final frames the composite rendered (``SHOT/final/``), in the aligned crop
at ``EVAL_SIZE`` px, unless said otherwise; where a frame is not rendered yet, on the
merged frame (the plate with the merged swap laid over it by its matte: the final frame
without the compositor's grain and grade):

- ``identity``: dlib's face-recognition distance of each frame to the source person (the
  mean embedding of frames of the source footage) and to the plate performer (of the
  plate's own frames); ``recognised`` = distance to the source below 0.6 (dlib's "same
  person"), ``closer_to_source`` = nearer the source than the plate performer. dlib is an
  optional extra: null with a reason when it or its models are missing.
- ``landmark_nme``: MediaPipe's landmarks of the merged frame against the plate's tracked
  landmarks, mean distance over the 468 mesh landmarks / inter-ocular distance: does the
  output keep the plate's expression and pose?
- ``jitter_ratio``: frame-to-frame jitter of those landmarks (in plate pixels) over the
  jitter of the plate's own landmarks found the same way on the plate's crops (not the
  track's: a track made around a tracking mask no longer sees what shakes the plate's):
  1 = the swap shakes as much as the footage.
- ``sharpness_ratio``: high-frequency energy (mean squared Laplacian) of the face over the
  plate's, at plate resolution, where the matte is full: 1 = as sharp;
  ``sharpness_ratio_merged`` the same without the compositor's grain (the detail the
  swap itself carries).
- ``eye_openness_error``: the eyes' openness (lid gap over eye width, MediaPipe's lid
  and corner landmarks, both eyes) of the merged frame against the plate's tracked one,
  mean absolute difference (open eyes are about 0.3, closed about 0.05);
  ``eye_openness_correlation`` over the shot (blinks and squints followed: near 1);
  ``gaze_error``: the irises' offset from the eyes' centres, over eye width, against the
  plate's, on frames where the plate's eyes are open.
- ``mouth_openness_error``, ``mouth_openness_correlation``: the same for the mouth (the
  inner lips' gap over the mouth's width): does the swap laugh as wide as the plate?
- ``ssim``, ``psnr`` (``--self-reenactment``, the source is the plate's person on other
  frames): the merged face against the real frame inside the face mask; ``ssim_model``
  the same for the model's own output at its resolution.
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
from ..common.crop import apply, for_opencv, invert
from ..common.dataset_file import load_dataset
from ..common.errors import FaceGraftError
from ..common.face_regions import mouth_openness
from ..common.merge_file import frame_path, load_merge_meta
from ..common.profiles import get_profile
from ..common.shot_layout import ShotLayout
from ..common.swap_file import load_swap
from ..common.track_file import load_track
from ..pipeline.video import probe_video, read_frames
from .losses import ssim_map
from .track_quality import jitter_px

EVAL_SIZE = 256  # crop size the figures are taken at
SAME_PERSON = 0.6  # dlib's threshold
MAX_IDENTITY_FRAMES = 240  # identity is measured on at most this many frames (evenly spread)


def evaluate_shot(shot: Path, profile: str = "cpu", self_reenactment: bool = False) -> Path:
    """``facegraft eval``: the figures of the shot's swap of ``profile`` in eval.json."""
    layout = ShotLayout(shot)
    name = get_profile(profile).name
    started = time.perf_counter()
    frames = merged_frames(layout, name)
    metrics = {"frames": len(frames["rows"])}
    metrics.update(expression_metrics(layout, frames))
    metrics.update(identity_metrics(layout, frames))
    metrics["sharpness_ratio"] = float(np.nanmean(frames["sharpness"]))
    metrics["sharpness_ratio_merged"] = float(np.nanmean(frames["sharpness_merged"]))
    metrics["final_frames"] = frames["final_frames"]
    if self_reenactment:
        metrics.update(similarity_metrics(layout, name, frames))
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    report = {"shot": str(layout.root), "profile": name, "self_reenactment": self_reenactment,
              "metrics": metrics, "per_frame": frames["per_frame"]}
    write_bytes_atomic(layout.eval_report, json.dumps(report, indent=1).encode())
    return layout.eval_report


def merged_frames(layout: ShotLayout, profile: str) -> dict:
    """Every merged frame of the shot as aligned crops (merged, plate) at EVAL_SIZE, with
    their rows, crop transforms, face masks and sharpness ratios."""
    track = load_track(layout.plate.track)
    merge_folder = layout.merge(profile)
    meta = load_merge_meta(merge_folder)
    size = load_swap(layout.swap(profile))["meta"]["resolution"]
    data = load_dataset(layout.plate.dataset(size))
    info = probe_video(Path(track.meta["video"]))
    start = int(track.meta["start"])
    scale = np.array([[EVAL_SIZE / size], [EVAL_SIZE / size]])
    out = {"rows": [], "crops": [], "merged": [], "plate": [], "mask": [], "sharpness": [],
           "sharpness_merged": [], "final_frames": 0}
    for index, plate in read_frames(info, start, start + track.frame_count):
        row = index - start
        if not data["present"][row]:
            continue
        swap = cv2.imread(str(frame_path(merge_folder, "swap", meta["first_scene_frame"] + row)),
                          cv2.IMREAD_UNCHANGED)
        matte = cv2.imread(str(frame_path(merge_folder, "matte", meta["first_scene_frame"]
                                          + row)), cv2.IMREAD_GRAYSCALE)
        if swap is None or matte is None:
            raise FaceGraftError(f"{merge_folder}: frame {row} of the merge is missing (run "
                                 f"Merge again)")
        alpha = matte[..., None].astype(np.float32) / 255
        merged = (plate * (1 - alpha) + swap[..., 2::-1] * alpha).round().astype(np.uint8)
        out["sharpness_merged"].append(sharpness_ratio(merged, plate, matte))
        final = cv2.imread(str(layout.final_frame(meta["first_scene_frame"] + row)))
        if final is not None and final.shape == plate.shape:
            merged = final[..., ::-1]
            out["final_frames"] += 1
        crop = np.asarray(data["crops"][row]) * scale
        warp = for_opencv(crop)
        out["rows"].append(row)
        out["crops"].append(crop)
        out["merged"].append(cv2.warpAffine(merged, warp, (EVAL_SIZE, EVAL_SIZE),
                                            flags=cv2.INTER_AREA))
        out["plate"].append(cv2.warpAffine(plate, warp, (EVAL_SIZE, EVAL_SIZE),
                                           flags=cv2.INTER_AREA))
        mask = cv2.resize(np.asarray(data["mask"][row]), (EVAL_SIZE, EVAL_SIZE),
                          interpolation=cv2.INTER_NEAREST) > 0
        out["mask"].append(mask)
        out["sharpness"].append(sharpness_ratio(merged, plate, matte))
    if not out["rows"]:
        raise FaceGraftError(f"{merge_folder}: no merged frame with a face")
    rows = np.asarray(out["rows"])
    out.update(rows=rows, crops=np.asarray(out["crops"]), merged=np.asarray(out["merged"]),
               plate=np.asarray(out["plate"]), mask=np.asarray(out["mask"]), track=track,
               per_frame={"row": rows.tolist(), "sharpness_ratio": _listed(out["sharpness"]),
                          "sharpness_ratio_merged": _listed(out["sharpness_merged"])})
    return out


def sharpness_ratio(merged: np.ndarray, plate: np.ndarray, matte: np.ndarray) -> float:
    """Mean squared Laplacian of the merged face over the plate's, where the matte is full."""
    full = cv2.erode((matte > 250).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if full.sum() < 100:
        return float("nan")
    energy = []
    for image in (merged, plate):
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        energy.append(float((cv2.Laplacian(grey, cv2.CV_32F)[full] ** 2).mean()))
    return energy[0] / max(energy[1], 1e-6)


def _listed(values) -> list:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), 4)
            for v in values]


def _detect_landmarks(images: np.ndarray) -> np.ndarray:
    """MediaPipe (VIDEO mode, in order) on (N, S, S, 3) crops: (N, 478, 2) crop pixels,
    NaN where no face is found."""
    from ..common.quiet_stderr import quiet_native_stderr
    from .landmarker import create_landmarker, detect

    out = np.full((len(images), 478, 2), np.nan)
    with quiet_native_stderr():
        landmarker = create_landmarker(1)
    for i, image in enumerate(images):
        faces = detect(landmarker, np.ascontiguousarray(image), i * 40)
        if faces:
            out[i] = faces[0].landmarks[:, :2]
    landmarker.close()
    return out


# MediaPipe face mesh: (outer corner, inner corner, upper lid, lower lid, iris centre).
EYES = ((33, 133, 159, 145, 468), (263, 362, 386, 374, 473))
OPEN_EYE = 0.15  # openness above which the plate's eye is open (the gaze is measured)


def _eye_openness_and_gaze(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) mean openness of both eyes and (N, 2, 2) each iris's offset from its eye's
    centre, over eye width, from landmarks (N, 478, 2)."""
    openness, gaze = [], []
    for outer, inner, upper, lower, iris in EYES:
        width = np.linalg.norm(points[:, outer] - points[:, inner], axis=-1)
        width = np.maximum(width, 1e-6)
        openness.append(np.linalg.norm(points[:, upper] - points[:, lower], axis=-1) / width)
        centre = (points[:, outer] + points[:, inner]) / 2
        gaze.append((points[:, iris] - centre) / width[:, None])
    return np.mean(openness, axis=0), np.stack(gaze, axis=1)


def _followed(found: np.ndarray, truth: np.ndarray, ok: np.ndarray
              ) -> tuple[float | None, float | None]:
    """Mean absolute difference of a per-frame measure over the ``ok`` frames, and its
    correlation with the plate's over the shot (None where the plate's does not vary)."""
    varied = ok.sum() > 2 and np.std(truth[ok]) > 0.01 and np.std(found[ok]) > 1e-6
    return (float(np.abs(found - truth)[ok].mean()) if ok.any() else None,
            float(np.corrcoef(found[ok], truth[ok])[0, 1]) if varied else None)


def eye_metrics(found: np.ndarray, truth: np.ndarray, ok: np.ndarray, per_frame: dict) -> dict:
    """Do the merged frame's eyes open, close and look where the plate's do?"""
    open_found, gaze_found = _eye_openness_and_gaze(found)
    open_truth, gaze_truth = _eye_openness_and_gaze(truth)
    gaze = np.linalg.norm(gaze_found - gaze_truth, axis=-1).mean(axis=1)
    looking = ok & (open_truth > OPEN_EYE)
    per_frame["eye_openness_plate"] = _listed(open_truth)
    per_frame["eye_openness"] = _listed(np.where(ok, open_found, np.nan))
    per_frame["gaze_error"] = _listed(np.where(looking, gaze, np.nan))
    error, correlation = _followed(open_found, open_truth, ok)
    return {"eye_openness_error": error, "eye_openness_correlation": correlation,
            "gaze_error": float(gaze[looking].mean()) if looking.any() else None}


def mouth_metrics(found: np.ndarray, truth: np.ndarray, ok: np.ndarray,
                  per_frame: dict) -> dict:
    """Does the merged frame's mouth open as wide as the plate's (a laugh, a vowel)? The
    openness is the inner lips' gap over the mouth's width: closed 0, a laugh about 0.3."""
    open_found, open_truth = mouth_openness(found), mouth_openness(truth)
    per_frame["mouth_openness_plate"] = _listed(open_truth)
    per_frame["mouth_openness"] = _listed(np.where(ok, open_found, np.nan))
    error, correlation = _followed(open_found, open_truth, ok)
    return {"mouth_openness_error": error, "mouth_openness_correlation": correlation}


def landmark_nme(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per frame, the mean distance of the 468 mesh landmarks ``found`` (N, >=468, >=2) from
    ``truth``'s, over ``truth``'s inter-ocular distance (outer eye corners)."""
    iod = np.linalg.norm(truth[:, 263, :2] - truth[:, 33, :2], axis=-1)
    return np.linalg.norm(found[:, :468, :2] - truth[:, :468, :2], axis=-1).mean(axis=1) / iod


def expression_metrics(layout: ShotLayout, frames: dict) -> dict:
    """Landmark error against the plate's track and jitter against the plate's own."""
    track, rows, crops = frames["track"], frames["rows"], frames["crops"]
    found = _detect_landmarks(frames["merged"])
    truth = apply(crops, track.landmarks[rows, :, :2])
    ok = ~np.isnan(found[:, 0, 0])
    error = landmark_nme(found, truth)
    span = slice(rows[0], rows[-1] + 1)
    jitter = [jitter_px(_in_plate(landmarks, rows, crops, track.frame_count)[span])
              for landmarks in (found, _detect_landmarks(frames["plate"]))]
    frames["per_frame"]["landmark_nme"] = _listed(np.where(ok, error, np.nan))
    return {**eye_metrics(found, truth, ok, frames["per_frame"]),
            **mouth_metrics(found, truth, ok, frames["per_frame"]),
            "landmark_nme": float(np.mean(error[ok])) if ok.any() else None,
            "landmark_detected_fraction": float(ok.mean()),
            "jitter_ratio": float(jitter[0] / jitter[1])}


def _in_plate(found: np.ndarray, rows: np.ndarray, crops: np.ndarray, count: int
              ) -> np.ndarray:
    """Landmarks found on the crops of ``rows``, in plate pixels, NaN on the other frames
    of the track's ``count`` and where none were found."""
    ok = ~np.isnan(found[:, 0, 0])
    out = np.full((count, found.shape[1], 2), np.nan)
    out[rows[ok]] = apply(invert(crops[ok]), found[ok])
    return out


def masked_similarity(a: np.ndarray, b: np.ndarray, mask: np.ndarray
                      ) -> tuple[float, float, list]:
    """Mean SSIM, PSNR and each frame's SSIM of RGB images ``a`` against ``b`` (N, H, W, 3
    uint8) inside ``mask`` (N, H, W bool)."""
    ta = torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
    tb = torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(mask).unsqueeze(1).float()
    per_frame = (ssim_map(ta, tb) * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp(min=1)
    mse = (((ta - tb) ** 2).mean(dim=1, keepdim=True) * m).sum() / m.sum()
    return float(per_frame.mean()), 10 * math.log10(1 / max(float(mse), 1e-12)), \
        per_frame.tolist()


def similarity_metrics(layout: ShotLayout, profile: str, frames: dict) -> dict:
    """SSIM and PSNR of the merged faces and of the model's output against the real frames."""
    ssim, psnr, per_frame = masked_similarity(frames["merged"], frames["plate"], frames["mask"])
    frames["per_frame"]["ssim"] = _listed(per_frame)
    swapped = load_swap(layout.swap(profile))
    data = load_dataset(layout.plate.dataset(swapped["meta"]["resolution"]))
    rows = frames["rows"]
    model_ssim, _, _ = masked_similarity(np.asarray(swapped["rgba"][rows, ..., :3]),
                                         np.asarray(data["rgb"][rows]),
                                         np.asarray(data["mask"][rows]) > 0)
    return {"ssim": ssim, "psnr": psnr, "ssim_model": model_ssim}


def identity_metrics(layout: ShotLayout, frames: dict) -> dict:
    """dlib distances of the merged frames to the source and the plate performer."""
    embed, reason = _identity_embedder()
    keys = ("identity_distance_to_source", "identity_distance_to_target", "recognised",
            "closer_to_source")
    if embed is None:
        return dict.fromkeys(keys) | {"identity_note": reason}
    people = (_mean_embedding(embed, _source_faces(layout)),
              _mean_embedding(embed, frames["plate"]))
    if any(p is None for p in people):
        return dict.fromkeys(keys) | {"identity_note": "dlib found no face in the footage"}
    picks = np.linspace(0, len(frames["rows"]) - 1,
                        min(len(frames["rows"]), MAX_IDENTITY_FRAMES)).round().astype(int)
    to_source, to_plate = np.full(len(frames["rows"]), np.nan), np.full(len(frames["rows"]),
                                                                          np.nan)
    for i in np.unique(picks):
        e = embed(frames["merged"][i])
        if e is not None:
            to_source[i], to_plate[i] = (np.linalg.norm(e - p) for p in people)
    found = ~np.isnan(to_source)
    frames["per_frame"].update(identity_to_source=_listed(to_source),
                               identity_to_plate=_listed(to_plate))
    measured = int(len(np.unique(picks)))
    return {"identity_distance_to_source": float(np.nanmean(to_source)) if found.any() else None,
            "identity_distance_to_target": float(np.nanmean(to_plate)) if found.any() else None,
            # A frame where dlib finds no face is not recognised as anyone.
            "recognised": float((to_source[found] < SAME_PERSON).sum() / measured),
            "closer_to_source": float((to_source[found] < to_plate[found]).sum() / measured),
            "identity_frames": measured,
            "identity_note": "dlib face-recognition distance; same person below 0.6"}


def _source_faces(layout: ShotLayout, count: int = 32) -> np.ndarray:
    """Aligned crops of the source person spread over their footage."""
    size = next(int(p.name.split("_")[1]) for p in sorted(layout.source.path.glob("dataset_*")))
    data = load_dataset(layout.source.dataset(size))
    present = np.flatnonzero(np.asarray(data["present"]))
    picks = present[np.linspace(0, len(present) - 1, min(count, len(present))).round().astype(int)]
    return np.asarray([cv2.resize(np.asarray(data["rgb"][row]), (EVAL_SIZE, EVAL_SIZE),
                                  interpolation=cv2.INTER_CUBIC) for row in picks])


def _mean_embedding(embed, images: np.ndarray) -> np.ndarray | None:
    picks = np.linspace(0, len(images) - 1, min(len(images), 32)).round().astype(int)
    found = [e for e in (embed(images[i]) for i in np.unique(picks)) if e is not None]
    return np.mean(found, axis=0) if found else None


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
        image = np.ascontiguousarray(rgb)
        boxes = detector(image, 1)
        if not boxes:
            return None
        shape = predictor(image, boxes[0])
        return np.asarray(resnet.compute_face_descriptor(image, shape))

    return embed, ""
