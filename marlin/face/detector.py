"""Face detection with MediaPipe's full-range BlazeFace model (192x192 input, 2304 SSD anchors).

The short-range model misses faces smaller than about a fifth of the frame, so only the full-range
one is used. Frames are letterboxed (aspect kept, black padding) before detection. The model also misses many
faces that fill the frame (a tight face crop such as the official YouTube Faces crops: 4 of the first 6 frames of
`cropped01.mp4`), so a frame in which it finds none is looked at once more with a black margin round it
(`RETRY_MARGIN`), which makes the face smaller in the model's input.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .models import TFLiteModel

_IN = 192
_GRID = 48  # one anchor per cell of a 48x48 grid (stride 4), fixed size 1
RETRY_MARGIN = 0.5  # the retry's margin on each side, as a fraction of the frame's longer side
_ANCHORS = np.stack(np.meshgrid((np.arange(_GRID) + 0.5) / _GRID, (np.arange(_GRID) + 0.5) / _GRID), -1).reshape(-1, 2)


@dataclass
class Detection:
    box: np.ndarray  # (4,) x1, y1, x2, y2 in source pixels
    keypoints: np.ndarray  # (6, 2) right eye, left eye, nose tip, mouth, right ear, left ear (subject's sides)
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))

    @property
    def center(self) -> np.ndarray:
        return (self.box[:2] + self.box[2:]) / 2


def letterbox(frame: np.ndarray, size: int, margin: float = 0.0) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio and pad to size x size, centred, with at least ``margin`` x the longer side
    of black on each side; returns (image, scale, pad_x, pad_y)."""
    h, w = frame.shape[:2]
    s = size / (max(h, w) * (1 + 2 * margin))
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    px, py = (size - nw) // 2, (size - nh) // 2
    out = np.zeros((size, size, 3), np.uint8)
    out[py:py + nh, px:px + nw] = small
    return out, s, px, py


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (..., 4) and b (..., 4), broadcast."""
    x1, y1 = np.maximum(a[..., 0], b[..., 0]), np.maximum(a[..., 1], b[..., 1])
    x2, y2 = np.minimum(a[..., 2], b[..., 2]), np.minimum(a[..., 3], b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda r: (r[..., 2] - r[..., 0]) * (r[..., 3] - r[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


class FaceDetector:
    """BlazeFace full-range detector; ``detect(frame)`` returns all faces, best first."""

    name = f"blazeface-full-range, retry with margin {RETRY_MARGIN}"

    def __init__(self, min_score: float = 0.5, nms_iou: float = 0.3, num_threads: int = 1):
        self.model = TFLiteModel("face_detection", num_threads)
        self.min_score = min_score
        self.nms_iou = nms_iou

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """frame: (H, W, 3) uint8 RGB -> detections in source pixels, highest score first; where the frame alone
        gives none, those of the frame with a margin round it (a face filling the frame)."""
        return self._detect(frame) or self._detect(frame, RETRY_MARGIN)

    def _detect(self, frame: np.ndarray, margin: float = 0.0) -> list[Detection]:
        img, s, px, py = letterbox(frame, _IN, margin)
        raw, logits = self.model(img.astype(np.float32) / 127.5 - 1.0)  # (2304, 16), (2304, 1)
        scores = 1 / (1 + np.exp(-np.clip(logits[:, 0], -80, 80)))
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        r = raw[keep] / _IN
        anc = _ANCHORS[keep]
        cx, cy = r[:, 0] + anc[:, 0], r[:, 1] + anc[:, 1]
        boxes = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, cx + r[:, 2] / 2, cy + r[:, 3] / 2], 1)
        kps = r[:, 4:16].reshape(-1, 6, 2) + anc[:, None, :]
        # normalised letterbox coordinates -> source pixels
        boxes = (boxes * _IN - [px, py, px, py]) / s
        kps = (kps * _IN - [px, py]) / s
        return self._weighted_nms(boxes, kps, scores[keep])

    def _weighted_nms(self, boxes, kps, scores) -> list[Detection]:
        order = np.argsort(-scores)
        boxes, kps, scores = boxes[order], kps[order], scores[order]
        out = []
        remaining = np.arange(len(scores))
        while remaining.size:
            ov = iou(boxes[remaining[0]], boxes[remaining])
            group = remaining[ov >= self.nms_iou]
            w = scores[group][:, None]
            out.append(Detection((boxes[group] * w).sum(0) / w.sum(),
                                 (kps[group] * w[:, :, None]).sum(0) / w.sum(), float(scores[group[0]])))
            remaining = remaining[ov < self.nms_iou]
        return out
