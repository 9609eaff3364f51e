"""Track the principal face through a video: landmarks from frame to frame, re-detection on loss or cut.

Which face is followed: at the start and after a scene cut, the largest detected face (area x score);
after a loss within a shot, the detection nearest to where the face was last seen (within one face
size), so a second person entering the frame does not steal the track.
"""
from __future__ import annotations

import cv2
import numpy as np

from .detector import Detection, FaceDetector
from .landmarks import FaceLandmarker, roi_from_detection, roi_from_landmarks


def _thumb(frame: np.ndarray) -> np.ndarray:
    """(32, 32) float grey thumbnail for cut detection; large frames are subsampled first (cheap on 4K)."""
    s = max(1, min(frame.shape[:2]) // 128)
    small = np.ascontiguousarray(frame[::s, ::s])
    return cv2.resize(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


class FaceTracker:
    """Call ``step(frame)`` once per frame in order; it returns (468, 3) landmarks or None (no face)."""

    def __init__(self, detector: FaceDetector, landmarker: FaceLandmarker, min_presence: float = 0.5,
                 cut_threshold: float = 30.0, min_face: float = 8.0):
        self.detector, self.landmarker = detector, landmarker
        self.min_presence = min_presence
        self.cut_threshold = cut_threshold  # mean abs difference of 32x32 grey thumbnails (0-255)
        self.min_face = min_face  # landmark boxes smaller than this (pixels) are rejected
        self.stats = {"detector_calls": 0, "cuts": 0, "losses": 0}
        self.reset()

    def reset(self) -> None:
        self._prev_pts = None  # landmarks of the last frame with a face
        self._last_box = None  # box of the last seen face (x1, y1, x2, y2)
        self._thumb = None

    def _accept(self, pts: np.ndarray, score: float) -> bool:
        if score < self.min_presence or not np.isfinite(pts).all():
            return False
        span = pts[:, :2].max(0) - pts[:, :2].min(0)
        return bool(span.min() >= self.min_face)

    def _choose(self, dets: list[Detection]) -> Detection | None:
        if not dets:
            return None
        if self._last_box is not None:
            c = (self._last_box[:2] + self._last_box[2:]) / 2
            size = max(self._last_box[2] - self._last_box[0], self._last_box[3] - self._last_box[1])
            near = [d for d in dets if np.linalg.norm(d.center - c) < size]
            if near:
                return min(near, key=lambda d: np.linalg.norm(d.center - c))
            return None  # only other people in view: keep waiting for ours
        return max(dets, key=lambda d: d.area * d.score)

    def step(self, frame: np.ndarray) -> np.ndarray | None:
        th = _thumb(frame)
        if self._thumb is not None and np.abs(th - self._thumb).mean() > self.cut_threshold:
            self.stats["cuts"] += 1
            self.reset()
        self._thumb = th
        if self._prev_pts is not None:
            pts, score = self.landmarker.landmarks(frame, roi_from_landmarks(self._prev_pts))
            if self._accept(pts, score):
                return self._keep(pts)
            self.stats["losses"] += 1
            self._prev_pts = None
        self.stats["detector_calls"] += 1
        det = self._choose(self.detector.detect(frame))
        if det is None:
            return None
        pts, score = self.landmarker.landmarks(frame, roi_from_detection(det))
        if not self._accept(pts, score):
            return None
        return self._keep(pts)

    def _keep(self, pts: np.ndarray) -> np.ndarray:
        self._prev_pts = pts
        self._last_box = np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0)])
        return pts
