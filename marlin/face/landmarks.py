"""468-point face landmarks (MediaPipe face mesh, ``face_landmark.tflite``) inside a rotated square ROI."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .detector import Detection
from .models import TFLiteModel

_IN = 192
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263  # subject's right / left eye corners


@dataclass
class ROI:
    """A rotated square in source pixels: centre (cx, cy), side, rotation (radians, eye line vs x axis)."""

    cx: float
    cy: float
    side: float
    angle: float

    def to_source(self, size: int) -> np.ndarray:
        """(2, 3) affine map from ROI pixels (a size x size image) to source pixels."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = self.side / size
        return np.array([[c * k, -s * k, self.cx - k * size / 2 * (c - s)],
                         [s * k, c * k, self.cy - k * size / 2 * (s + c)]])


def _roi(center, w, h, angle, scale=1.5) -> ROI:
    return ROI(float(center[0]), float(center[1]), float(max(w, h) * scale), float(angle))


def roi_from_detection(det: Detection) -> ROI:
    """MediaPipe's detection-to-ROI rule: box scaled 1.5x, squared, rotated by the eye line."""
    d = det.keypoints[1] - det.keypoints[0]  # right eye -> left eye
    return _roi(det.center, det.box[2] - det.box[0], det.box[3] - det.box[1], np.arctan2(d[1], d[0]))


def roi_from_landmarks(pts: np.ndarray) -> ROI:
    """Tracking ROI from the previous frame's landmarks (468, 2+): bounds in the eye-line frame, 1.5x."""
    d = pts[LEFT_EYE_OUTER, :2] - pts[RIGHT_EYE_OUTER, :2]
    a = np.arctan2(d[1], d[0])
    c, s = np.cos(a), np.sin(a)
    rot = pts[:, :2] @ np.array([[c, -s], [s, c]])  # into the face-aligned frame
    lo, hi = rot.min(0), rot.max(0)
    mid = ((lo + hi) / 2) @ np.array([[c, s], [-s, c]])
    return _roi(mid, *(hi - lo), a)


class FaceLandmarker:
    """``landmarks(frame, roi)`` -> ((468, 3) source-pixel points, presence score in [0, 1])."""

    name = "mediapipe-face-mesh-468"

    def __init__(self, num_threads: int = 1):
        self.model = TFLiteModel("face_landmark", num_threads)

    def landmarks(self, frame: np.ndarray, roi: ROI) -> tuple[np.ndarray, float]:
        m = roi.to_source(_IN)
        patch = cv2.warpAffine(frame, m, (_IN, _IN), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_CONSTANT)  # (192, 192, 3)
        raw, flag = self.model(patch.astype(np.float32) / 255.0)
        pts = raw.reshape(468, 3)
        out = np.empty_like(pts)
        out[:, :2] = pts[:, :2] @ m[:, :2].T + m[:, 2]
        out[:, 2] = pts[:, 2] * roi.side / _IN
        score = float(1 / (1 + np.exp(-np.clip(flag.reshape(-1)[0], -80, 80))))
        return out, score
