"""The track stage: MediaPipe over a video in parallel processes, then face selection,
per-frame 3D shape, temporal filtering, and an atomic ``track.npz``.

Parallelism: MediaPipe's FaceLandmarker uses one core, so the frame range is cut into one
contiguous chunk per worker process (spawned, each with its own landmarker; VIDEO mode
keeps its tracking state inside a chunk). Each chunk starts with a fresh face detection,
which costs nothing in accuracy.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import multiprocessing as mp
import os
import queue
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..common.atomic import new_folders
from ..common.camera import Intrinsics, mediapipe_intrinsics
from ..common.canonical_mesh import (
    BUNDLE_SHA256,
    NUM_LANDMARKS,
    NUM_MESH_VERTICES,
    load_canonical_mesh,
)
from ..common.errors import FaceGraftError
from ..common.file_checks import json_is_readable, npz_is_complete
from ..common.frame_parts import (
    chunk_span,
    covering_parts,
    part_folder,
    part_is_done,
    remove_parts,
    write_part_meta,
)
from ..common.head_pose import (
    matrix_to_quat_trans,
    metric_landmarks,
    project_shape,
    quat_trans_to_matrix,
)
from ..common.progress import Progress
from ..common.quiet_stderr import quiet_native_stderr
from ..common.samples import sha256_of
from ..common.shot_layout import ShotLayout
from ..common.stage_folders import written_folder
from ..common.stage_table import revision
from ..common.track_file import TRACK_VERSION, Track, read_track_meta, save_track
from ..pipeline.track_mask import mask_files, mask_key, read_mask, without_masked
from ..pipeline.video import VideoInfo, probe_video, read_frames, sequence_hash
from .smoothing import OneEuroParams, filter_present

# Filter settings in physical units, so they hold for any frame rate and resolution.
# The pose opens up quickly with speed (beta, and a speed estimate of 2 Hz): with beta ten
# times lower a laugh's shake of the head was flattened by up to 7 px on franck.mp4's 122 px
# wide face, the swapped face slid off the plate's and self-reenactment SSIM fell to 0.61.
# Shape and blendshapes likewise, for blinks: a slower filter left a shut eye's blink 0.06-0.08
# short of its peak.
FILTERS = {
    "rotation": OneEuroParams(min_cutoff_hz=1.0, beta=20.0, d_cutoff_hz=2.0),  # quaternions
    "translation": OneEuroParams(min_cutoff_hz=1.0, beta=1.0, d_cutoff_hz=2.0),  # cm
    "shape": OneEuroParams(min_cutoff_hz=1.5, beta=2.0, d_cutoff_hz=2.0),  # head-space cm
    "depth": OneEuroParams(min_cutoff_hz=1.5, beta=0.05),  # relative z, pixels
    "blendshapes": OneEuroParams(min_cutoff_hz=2.0, beta=5.0, d_cutoff_hz=2.0),  # 0..1
}
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 263, 33
MAX_CANONICAL_ERROR = 0.10  # rigid error against the canonical face beyond which
# a detection is not taken for a face (see build_track)
CONFIDENCE_SCALE = 0.05  # rigid error (inter-ocular units) at which confidence is 1/e
MIN_FRAMES_PER_WORKER = 120  # below this a second process costs more than it saves
SEGMENT_FRAMES = 240  # MediaPipe starts afresh every this many frames (see segment_start)
PICK_DEFAULT_FACES = 4
MIN_IOU = 0.2


@dataclass
class RawDetections:
    """Per frame, up to K faces as MediaPipe reported them."""

    landmarks: np.ndarray  # (N, K, 478, 3) f32
    blendshapes: np.ndarray  # (N, K, 52) f32
    head_matrix: np.ndarray  # (N, K, 4, 4) f32
    count: np.ndarray  # (N,) faces found per frame
    decoded: int  # frames actually decoded from the start of the range


def segment_start(frame: int, track_start: int) -> int:
    """The first frame of the detection segment holding ``frame``: MediaPipe starts afresh
    (a new face detection) at every multiple of SEGMENT_FRAMES and at the track's start,
    whichever process or farm chunk reads it, so a chunk detects exactly what one pass
    detects."""
    return max(track_start, frame - frame % SEGMENT_FRAMES)


def _track_chunk(info: VideoInfo, start: int, end: int, num_faces: int,
                 messages: mp.Queue, chunk: int, parent_pid: int, track_start: int,
                 mask: Path | None) -> None:
    """Worker process: detect faces in frames start..end-1, send the arrays back. Frames
    of the first segment before ``start`` are decoded and tracked, not kept. ``mask``: a
    tracking mask folder, its pixels filled before the landmarker sees them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    try:
        from .landmarker import NUM_BLENDSHAPES, create_landmarker, detect

        n = end - start
        landmarks = np.full((n, num_faces, NUM_LANDMARKS, 3), np.nan, np.float32)
        shapes = np.full((n, num_faces, NUM_BLENDSHAPES), np.nan, np.float32)
        matrices = np.full((n, num_faces, 4, 4), np.nan, np.float32)
        count = np.zeros(n, np.int8)
        decoded, landmarker = 0, None
        masks = mask_files(mask) if mask is not None else {}
        for index, rgb in read_frames(info, segment_start(start, track_start), end):
            if index + 1 in masks:  # masks are numbered by scene frame
                rgb = without_masked(rgb, read_mask(masks[index + 1], info.width, info.height))
            if landmarker is None or segment_start(index, track_start) == index:
                if landmarker is not None:
                    landmarker.close()
                with quiet_native_stderr():  # its set-up and first inference log lines
                    landmarker = create_landmarker(num_faces)
                    faces = detect(landmarker, rgb, int(round(index * 1000.0 / info.fps)))
            else:
                faces = detect(landmarker, rgb, int(round(index * 1000.0 / info.fps)))
            if index < start:
                continue
            row = index - start
            for k, face in enumerate(faces[:num_faces]):
                landmarks[row, k] = face.landmarks
                shapes[row, k] = face.blendshapes
                matrices[row, k] = face.head_matrix
            count[row] = min(len(faces), num_faces)
            decoded += 1
            if decoded % 24 == 0:
                messages.put(("progress", chunk, decoded))
                if os.getppid() != parent_pid:
                    return  # the parent is gone: nobody wants the result
        if landmarker is not None:
            landmarker.close()
        messages.put(("result", chunk, RawDetections(landmarks, shapes, matrices, count, decoded)))
    except FaceGraftError as exc:
        messages.put(("error", chunk, str(exc)))
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which exits non-zero)
        cause = f"{type(exc).__name__}: {exc}"
        messages.put(("error", chunk, f"{info.path}: tracking failed ({cause})"))


def _worker_bounds(start: int, end: int, workers: int, track_start: int) -> np.ndarray:
    """Frame ranges of the worker processes: about equal, cut at segment starts (a cut
    elsewhere would cost the second process the segment's frames before it)."""
    cuts = {start, end}
    for point in np.linspace(start, end, workers + 1)[1:-1]:
        below = segment_start(int(round(point)), track_start)
        above = below + SEGMENT_FRAMES
        cuts.add(below if point - below <= above - point or above >= end else above)
    return np.array(sorted(cuts))


def detect_faces(info: VideoInfo, start: int, end: int, num_faces: int, workers: int,
                 progress: Progress, track_start: int | None = None,
                 mask: Path | None = None) -> RawDetections:
    """Run the landmarker over frames start..end-1 in ``workers`` processes (a farm
    chunk of a track starting at ``track_start``: only its frames), ``mask``'s pixels
    filled."""
    track_start = start if track_start is None else track_start
    total = end - start
    workers = max(1, min(workers, total // MIN_FRAMES_PER_WORKER))
    bounds = _worker_bounds(start, end, workers, track_start)
    workers = len(bounds) - 1
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    procs = [
        ctx.Process(target=_track_chunk, daemon=True,
                    args=(info, int(bounds[i]), int(bounds[i + 1]), num_faces, messages, i,
                          os.getpid(), track_start, mask))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    results: dict[int, RawDetections] = {}
    done = [0] * workers
    try:
        while len(results) < workers:
            try:
                kind, chunk, payload = messages.get(timeout=1.0)
            except queue.Empty:
                dead = [p for i, p in enumerate(procs) if i not in results and not p.is_alive()]
                if dead and messages.empty():
                    raise FaceGraftError(
                        f"{info.path}: a tracking process died (exit code {dead[0].exitcode})"
                    ) from None
                continue
            if kind == "error":
                raise FaceGraftError(payload)
            if kind == "progress":
                done[chunk] = payload
            else:
                results[chunk] = payload
                done[chunk] = bounds[chunk + 1] - bounds[chunk]
            progress.update(sum(done))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=5)
    return _concatenate([results[i] for i in range(workers)], bounds)


def _concatenate(chunks: list[RawDetections], bounds: np.ndarray) -> RawDetections:
    # A container may overstate its frame count; keep frames up to the first short chunk.
    kept = []
    for i, chunk in enumerate(chunks):
        kept.append(chunk)
        if chunk.decoded < bounds[i + 1] - bounds[i]:
            break
    decoded = int(sum(c.decoded for c in kept))
    # A short chunk's arrays are full size with NaN after its last frame: cut them off.
    cat = {name: np.concatenate([getattr(c, name) for c in kept])[:decoded]
           for name in ("landmarks", "blendshapes", "head_matrix", "count")}
    return RawDetections(decoded=decoded, **cat)


def _bbox(landmarks: np.ndarray) -> np.ndarray:
    return np.concatenate([landmarks[:, :2].min(0), landmarks[:, :2].max(0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lo = np.maximum(a[:2], b[:2])
    hi = np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    area = lambda box: float(np.prod(box[2:] - box[:2]))  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def select_face(raw: RawDetections, pick: tuple[float, float] | None) -> np.ndarray:
    """Which of each frame's faces is the followed person: (N,) index, -1 when absent.

    Without ``pick`` MediaPipe follows one face itself (one face asked for). With ``pick``
    (pixel x, y in the first frame), the face under or nearest that point is taken, then
    followed frame to frame by bounding-box overlap; a frame where no face overlaps the
    last known position enough is marked absent rather than jumping to someone else.
    """
    n = len(raw.count)
    choice = np.full(n, -1, np.int64)
    if pick is None:
        choice[raw.count > 0] = 0
        return choice
    last_box = None
    for t in range(n):
        boxes = [_bbox(raw.landmarks[t, k]) for k in range(raw.count[t])]
        if not boxes:
            continue
        if last_box is None:
            centres = [(b[:2] + b[2:]) / 2 for b in boxes]
            inside = [k for k, b in enumerate(boxes)
                      if b[0] <= pick[0] <= b[2] and b[1] <= pick[1] <= b[3]]
            k = inside[0] if inside else int(np.argmin(
                [np.hypot(*(c - np.asarray(pick))) for c in centres]))
        else:
            overlaps = [_iou(last_box, b) for b in boxes]
            k = int(np.argmax(overlaps))
            if overlaps[k] < MIN_IOU:
                continue
        choice[t] = k
        last_box = boxes[k]
    return choice


def _inter_ocular(landmarks: np.ndarray) -> np.ndarray:
    return np.linalg.norm(landmarks[..., LEFT_EYE_OUTER, :2] - landmarks[..., RIGHT_EYE_OUTER, :2],
                          axis=-1)


def rigid_errors(landmarks_px: np.ndarray, matrices: np.ndarray, shape: np.ndarray,
                 intr: Intrinsics, pose_landmarks_only: bool = True) -> np.ndarray:
    """Per frame, how far the 2D landmarks lie from a rigid head of the given shape placed
    by the matrices, in inter-ocular distances (mean over the landmarks).

    With ``pose_landmarks_only`` only MediaPipe's pose landmarks (forehead, nose,
    cheekbones: those with Procrustes weight) count; expression barely moves them.
    """
    points = (load_canonical_mesh().procrustes_weights > 0 if pose_landmarks_only
              else np.ones(NUM_MESH_VERTICES, bool))
    placed = project_shape(matrices, shape[:NUM_MESH_VERTICES][points], intr)
    observed = landmarks_px[:, :NUM_MESH_VERTICES][:, points, :2]
    err = np.linalg.norm(placed - observed, axis=-1).mean(-1)
    return err / _inter_ocular(landmarks_px)


# OpenGL camera space (y up, looking down -z) to OpenCV's (y down, looking down +z).
GL_TO_CV = np.diag([1.0, -1.0, -1.0])


def refine_head_pose(landmarks_px: np.ndarray, matrices: np.ndarray, shape: np.ndarray,
                     intr: Intrinsics) -> np.ndarray:
    """Refit each head matrix to the 2D pose landmarks (perspective-n-point, started from
    MediaPipe's matrix) for a rigid head of the given shape.

    MediaPipe fits its matrix in 3D to landmarks unprojected with their estimated depths,
    which drifts for faces away from the image centre (0.12 inter-ocular distances of
    reprojection error on a face at the side of a 720x288 frame, 0.04 at the centre).
    Fitting in the image removes that, so the Blender scene's head lines up on the plate.
    """
    stable = load_canonical_mesh().procrustes_weights > 0
    object_points = np.ascontiguousarray(shape[:NUM_MESH_VERTICES][stable], np.float64)
    camera = np.array([[intr.focal_px, 0, intr.cx], [0, intr.focal_px, intr.cy], [0, 0, 1]])
    refined = np.empty_like(matrices, dtype=np.float64)
    for i, (points, matrix) in enumerate(zip(landmarks_px, matrices, strict=True)):
        image_points = np.ascontiguousarray(points[:NUM_MESH_VERTICES][stable, :2], np.float64)
        rvec, _ = cv2.Rodrigues(GL_TO_CV @ matrix[:3, :3])
        tvec = (GL_TO_CV @ matrix[:3, 3]).reshape(3, 1)
        ok, rvec, tvec = cv2.solvePnP(object_points, image_points, camera, None, rvec, tvec,
                                      useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        refined[i] = np.eye(4)
        if ok and tvec[2, 0] > 0:
            rotation, _ = cv2.Rodrigues(rvec)
            refined[i, :3, :3] = GL_TO_CV @ rotation
            refined[i, :3, 3] = GL_TO_CV @ tvec[:, 0]
        else:
            refined[i] = matrix
    return refined


def build_track(raw: RawDetections, choice: np.ndarray, intr: Intrinsics, fps: float) -> Track:
    """Turn the followed face's detections into a filtered, self-consistent track.

    A detection is only taken for a face if a rigid head with the canonical face shape,
    fitted to its pose landmarks, lies near all of its 468 landmarks
    (``MAX_CANONICAL_ERROR``): on face_noface.mov MediaPipe reports a crumpled "face" in
    a cartoon sky at 0.124 inter-ocular distances, while real faces measured 0.054 at
    worst on franck.mp4, 0.044 on single_face.mp4, 0.065 on carphone_pristine.mp4 and
    0.076 in a two-person side-by-side composite.
    """
    landmarks_raw, shapes_raw, matrix_raw, found = _followed_face(raw, choice)
    matrix_mediapipe = matrix_raw.copy()
    canonical = load_canonical_mesh().vertices.astype(np.float64)
    present = found.copy()
    if found.any():
        matrix_raw[found] = refine_head_pose(landmarks_raw[found], matrix_raw[found], canonical,
                                             intr)
        canonical_error = rigid_errors(landmarks_raw[found], matrix_raw[found], canonical, intr,
                                       pose_landmarks_only=False)
        present[found] = canonical_error <= MAX_CANONICAL_ERROR
    for array in (landmarks_raw, shapes_raw, matrix_raw, matrix_mediapipe):
        array[~present] = np.nan
    metric_raw, rigid_error = _fit_own_head(landmarks_raw, matrix_raw, present, intr, canonical)
    matrix_f, metric_f, landmarks_f, shapes_f = _filtered(landmarks_raw, shapes_raw, matrix_raw,
                                                          metric_raw, present, intr, fps)
    return Track(
        landmarks=landmarks_f, landmarks_raw=landmarks_raw,
        metric_landmarks=metric_f, metric_landmarks_raw=metric_raw,
        head_matrix=matrix_f, head_matrix_raw=matrix_raw, head_matrix_mediapipe=matrix_mediapipe,
        blendshapes=shapes_f, blendshapes_raw=shapes_raw, present=present,
        confidence=np.exp(-rigid_error / CONFIDENCE_SCALE), rigid_error=rigid_error,
    )


def _followed_face(raw: RawDetections, choice: np.ndarray) -> tuple:
    """The chosen face's landmarks, blendshapes and head matrices per frame (NaN where it
    was not found), and where it was found."""
    found = choice >= 0
    rows = np.arange(len(choice))
    pick = np.where(found, choice, 0)
    landmarks = np.where(found[:, None, None], raw.landmarks[rows, pick], np.nan)
    shapes = np.where(found[:, None], raw.blendshapes[rows, pick], np.nan)
    matrix = np.where(found[:, None, None], raw.head_matrix[rows, pick], np.nan)
    return landmarks.astype(np.float64), shapes, matrix.astype(np.float64), found


def _fit_own_head(landmarks_raw, matrix_raw, present, intr: Intrinsics, canonical) -> tuple:
    """Second pass with this person's neutral shape (the median over the shot): the pose of
    their own rigid head (``matrix_raw`` is updated), the per-frame metric shape, and a
    rigid error in which identity does not count."""
    n = len(present)
    metric_raw = np.full((n, NUM_LANDMARKS, 3), np.nan)
    rigid_error = np.full(n, np.nan)
    if present.any():
        first = metric_landmarks(landmarks_raw[present], matrix_raw[present], intr, canonical)
        neutral = np.median(first[:, :NUM_MESH_VERTICES], axis=0)
        matrix_raw[present] = refine_head_pose(landmarks_raw[present], matrix_raw[present],
                                               neutral, intr)
        metric_raw[present] = metric_landmarks(landmarks_raw[present], matrix_raw[present], intr,
                                               canonical)
        rigid_error[present] = rigid_errors(landmarks_raw[present], matrix_raw[present], neutral,
                                            intr)
    return metric_raw, rigid_error


def _filtered(landmarks_raw, shapes_raw, matrix_raw, metric_raw, present, intr: Intrinsics,
              fps: float) -> tuple:
    """The zero-phase filtered pose (quaternion + translation, each present run on its own),
    shape, image landmarks (the projection of both) and blendshapes."""
    n = len(present)
    quats = np.full((n, 4), np.nan)
    trans = np.full((n, 3), np.nan)
    matrix_f = np.full((n, 4, 4), np.nan)
    if present.any():
        quats[present], trans[present] = matrix_to_quat_trans(matrix_raw[present])
    quats_f = filter_present(quats, present, fps, FILTERS["rotation"])
    trans_f = filter_present(trans, present, fps, FILTERS["translation"])
    if present.any():
        matrix_f[present] = quat_trans_to_matrix(quats_f[present], trans_f[present])
    metric_f = filter_present(metric_raw, present, fps, FILTERS["shape"])
    landmarks_f = np.full_like(landmarks_raw, np.nan)
    landmarks_f[present, :, :2] = project_shape(matrix_f[present], metric_f[present], intr)
    landmarks_f[..., 2] = filter_present(landmarks_raw[..., 2], present, fps, FILTERS["depth"])
    shapes_f = np.clip(filter_present(shapes_raw, present, fps, FILTERS["blendshapes"]), 0, 1)
    return matrix_f, metric_f, landmarks_f, shapes_f


def _check_writable(folder: Path) -> None:
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FaceGraftError(f"{folder}: shot folder is not writable ({reason})") from exc


def _inputs_key(video_sha: str, start: int, end: int, pick, num_faces: int,
                mask_sha: str | None) -> str:
    settings = {
        "video_sha256": video_sha, "start": start, "end": end, "pick": pick,
        "num_faces": num_faces, "bundle": BUNDLE_SHA256, "track_version": TRACK_VERSION,
        "tracker_revision": revision("track"),
        "filters": {k: v.to_dict() for k, v in FILTERS.items()},
    }
    if mask_sha is not None:  # a track without a mask keeps the key it always had
        settings["mask"] = mask_sha
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def track_video(
    video: Path, shot: Path, role: str = "plate", start: int = 0, end: int | None = None,
    pick: tuple[float, float] | None = None, num_faces: int | None = None,
    workers: int | None = None, progress_mode: str = "bar", force: bool = False,
    chunk: tuple[int, int] | None = None, mask: Path | None = None,
) -> Path:
    """Track ``video`` (frames start..end-1) into the shot's track of ``role``; return its
    path. ``chunk``: only detect those scene frames (plate frame + 1), as a part the run
    without a chunk joins before it selects, filters and writes the whole track (the
    zero-phase filter needs every frame). ``mask``: what the landmarker must not see
    (pipeline/track_mask.py; default: the shot's ``<role>/track_mask/`` if there is one).

    A rerun with the same video, range and settings leaves the existing track alone
    unless ``force``.
    """
    video = Path(video)
    footage = ShotLayout(shot).footage(role)
    target, mask = footage.track, mask if mask is not None else _shot_mask(footage.track_mask)
    info = probe_video(video)
    end = info.frame_count if end is None else end
    if not 0 <= start < end:
        raise FaceGraftError(f"{video}: empty frame range {start}..{end}")
    if end > info.frame_count:
        raise FaceGraftError(
            f"{video}: frame range ends at {end} but the video has {info.frame_count} frames"
        )
    chunk, rows = chunk_span(chunk, start, end - start, video)
    num_faces = num_faces or (PICK_DEFAULT_FACES if pick else 1)
    with new_folders(target.parent):
        _check_writable(target.parent)
        clock = time.perf_counter()
        video_sha = sha256_of(video) if not info.is_sequence else sequence_hash(video)
        mask_sha = mask_key(mask) if mask is not None else None
        timings = {"hash_s": time.perf_counter() - clock}
        key = _inputs_key(video_sha, start, end, list(pick) if pick else None, num_faces,
                          mask_sha)
        existing = read_track_meta(target) if target.exists() else None
        if not force and ((existing and existing.get("inputs_key") == key) or (
                chunk is not None and part_is_done(target, chunk, key, _part_is_complete))):
            Progress("track", 1, progress_mode).finish(output=str(target), skipped=True)
            return target
        workers = workers or min(2, os.cpu_count() or 1)
        progress = Progress("track", rows[1] - rows[0], progress_mode)
        try:
            if chunk is not None:
                raw = detect_faces(info, start + rows[0], start + rows[1], num_faces, workers,
                                   progress, track_start=start, mask=mask)
                _save_part(raw, target, chunk, rows, key)
                progress.finish(output=str(part_folder(target, chunk)), frames=raw.decoded)
                return part_folder(target, chunk)
            track = _whole_track(info, video, target, start, end, pick, num_faces, workers,
                                 key, video_sha, timings, progress, mask)
            save_track(track, target)
            remove_parts(target)
        except FaceGraftError as exc:
            progress.error(str(exc))
            raise
    progress.finish(output=str(target), frames=track.frame_count,
                    present=int(track.present.sum()))
    return target


def _shot_mask(folder: Path) -> Path | None:
    return folder if folder.is_dir() else None


def _whole_track(info: VideoInfo, video: Path, target: Path, start: int, end: int, pick,
                 num_faces: int, workers: int, key: str, video_sha: str, timings: dict,
                 progress: Progress, mask: Path | None) -> Track:
    """The detections (joined from farm chunks' parts, or detected now), the followed
    face and its filtered 3D track."""
    clock = time.perf_counter()
    parts = covering_parts(target, key, end - start, _part_is_complete)
    if parts is not None:
        raw = _concatenate([_load_part(part) for part, _ in parts],
                           np.array([start] + [start + m["rows"][1] for _, m in parts]))
    else:
        raw = detect_faces(info, start, end, num_faces, workers, progress, mask=mask)
    timings["detect_s"] = time.perf_counter() - clock
    clock = time.perf_counter()
    intr = mediapipe_intrinsics(info.width, info.height)
    track = build_track(raw, select_face(raw, pick), intr, info.fps)
    if not track.present.any():
        raise FaceGraftError(f"{video}: no face found in frames {start}..{end - 1}")
    timings["filter_s"] = time.perf_counter() - clock
    track.meta = _track_meta(video, info, start, intr, video_sha, pick, num_faces, key,
                             workers, timings)
    track.meta["mask"] = str(Path(mask).resolve()) if mask is not None else None
    return track


PART_ARRAYS = ("landmarks", "blendshapes", "head_matrix", "count")


def _save_part(raw: RawDetections, target: Path, chunk: tuple[int, int],
               rows: tuple[int, int], key: str) -> None:
    """A farm chunk's detections: ``track.npz.parts/<FIRST>-<LAST>/detections.npz``."""
    with written_folder(part_folder(target, chunk)) as partial:
        with open(partial / "detections.npz", "wb") as f:
            np.savez(f, **{name: getattr(raw, name) for name in PART_ARRAYS})
        write_part_meta(partial, chunk, rows, key, {"decoded": raw.decoded})


def _part_is_complete(folder: Path) -> bool:
    return json_is_readable(folder / "meta.json") and npz_is_complete(folder / "detections.npz")


def _load_part(folder: Path) -> RawDetections:
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "detections.npz") as arrays:
        return RawDetections(decoded=int(meta["decoded"]),
                             **{name: arrays[name] for name in PART_ARRAYS})


def _track_meta(video: Path, info: VideoInfo, start: int, intr: Intrinsics, video_sha: str,
                pick, num_faces: int, key: str, workers: int, timings: dict) -> dict:
    from .landmarker import BLENDSHAPE_NAMES

    return {
        "start": start, "fps": info.fps, "width": info.width, "height": info.height,
        "focal_px": intr.focal_px, "cx": intr.cx, "cy": intr.cy,
        "camera": "MediaPipe geometry pipeline pinhole: 63 deg vertical FOV, principal "
                  "point at the image centre",
        "video": str(video.resolve()), "video_sha256": video_sha,
        "video_bytes": video.stat().st_size if video.is_file() else None,
        "video_frame_count": info.frame_count,
        "blendshape_names": list(BLENDSHAPE_NAMES),
        "filter": {k: v.to_dict() for k, v in FILTERS.items()},
        "selection": {"pick": list(pick) if pick else None, "num_faces": num_faces},
        "landmarker_bundle_sha256": BUNDLE_SHA256,
        "inputs_key": key,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "facegraft_version": "0.1.0",
        "workers": workers,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }
