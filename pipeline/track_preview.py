"""A preview video of a track: the fitted face mesh and the landmarks over the footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..common.atomic import atomic_path
from ..common.canonical_mesh import NUM_MESH_VERTICES, load_canonical_mesh
from ..common.errors import FaceGraftError
from ..common.shot_layout import ShotLayout
from ..common.track_file import load_track
from .video import probe_video, read_frames

MESH_COLOUR = (255, 200, 60)  # BGR
LANDMARK_COLOUR = (60, 255, 60)
IRIS_COLOUR = (60, 60, 255)


def mesh_edges() -> np.ndarray:
    """Unique (E, 2) vertex index pairs of the canonical mesh's triangles."""
    tri = load_canonical_mesh().triangles
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    return np.unique(np.sort(edges, axis=1), axis=0)


def write_track_preview(shot: Path, out: Path, role: str = "plate",
                        video: Path | None = None) -> Path:
    """Draw the track of ``role`` over its video into ``out`` (.mp4), atomically."""
    footage = ShotLayout(shot).footage(role)
    track = load_track(footage.track)
    video = Path(video or track.meta["video"])
    info = probe_video(video)
    if (info.width, info.height) != (track.meta["width"], track.meta["height"]):
        raise FaceGraftError(f"{video}: not the video of {footage.track} (size differs)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    edges = mesh_edges()
    start = int(track.meta["start"])
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), info.fps,
                                 (info.width, info.height))
        if not writer.isOpened():
            raise FaceGraftError(f"{out}: OpenCV cannot write an MP4 here")
        try:
            for index, rgb in read_frames(info, start, start + track.frame_count):
                frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
                row = index - start
                if track.present[row]:
                    points = track.landmarks[row, :, :2]
                    fixed = np.round(points * 16).astype(np.int32)  # 4 bits of sub-pixel
                    lines = fixed[edges]
                    cv2.polylines(frame, list(lines), False, MESH_COLOUR, 1, cv2.LINE_AA, 4)
                    for k, (x, y) in enumerate(fixed):
                        colour = LANDMARK_COLOUR if k < NUM_MESH_VERTICES else IRIS_COLOUR
                        cv2.circle(frame, (int(x), int(y)), 16, colour, -1, cv2.LINE_AA, 4)
                    label = f"{index}  conf {track.confidence[row]:.2f}"
                else:
                    label = f"{index}  no face"
                cv2.putText(frame, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                            (255, 255, 255), 1, cv2.LINE_AA)
                writer.write(frame)
        finally:
            writer.release()
    return out
