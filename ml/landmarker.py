"""MediaPipe FaceLandmarker in VIDEO mode, loaded from the verified bundle in assets/."""

from __future__ import annotations

from dataclasses import dataclass

import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from ..common.canonical_mesh import NUM_LANDMARKS, read_bundle_bytes

NUM_BLENDSHAPES = 52


@dataclass
class FaceObservation:
    landmarks: np.ndarray  # (478, 3): x, y pixels; z relative depth in pixels
    blendshapes: np.ndarray  # (52,)
    head_matrix: np.ndarray  # (4, 4)


def create_landmarker(num_faces: int = 1) -> vision.FaceLandmarker:
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_buffer=read_bundle_bytes()),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=num_faces,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    return vision.FaceLandmarker.create_from_options(options)


def detect(
    landmarker: vision.FaceLandmarker, rgb: np.ndarray, timestamp_ms: int
) -> list[FaceObservation]:
    """All faces MediaPipe reports in one frame, in pixels."""
    height, width = rgb.shape[:2]
    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
    result = landmarker.detect_for_video(image, timestamp_ms)
    faces = []
    scale = np.array([width, height, width], np.float32)
    for i, points in enumerate(result.face_landmarks):
        landmarks = np.array([(p.x, p.y, p.z) for p in points], np.float32) * scale
        if landmarks.shape != (NUM_LANDMARKS, 3):
            continue
        shapes = np.array([c.score for c in result.face_blendshapes[i]], np.float32)
        matrix = np.asarray(result.facial_transformation_matrixes[i], np.float32)
        faces.append(FaceObservation(landmarks, shapes, matrix))
    return faces


# The names MediaPipe's blendshape model reports, in its output order: "_neutral" and the
# ARKit names (ARKit's "tongueOut" is not estimated).
BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
