"""Square crop boxes from landmarks, temporal smoothing, and cropping with black padding.

Box convention (calibrated against the official RetinaFace crops of the official sample videos, see
docs/face_pipeline.md): side = SIDE_SCALE x the face scale of :func:`face_scale` (several landmark
distances, so that the size does not depend on in-plane rotation, mirroring or the face's width alone),
centre = landmark-box centre shifted by CENTER_SHIFT x side (slightly up and to the image left).
"""
from __future__ import annotations

import cv2
import numpy as np

SIDE_SCALE = 0.975
CENTER_SHIFT = (-0.01, -0.05)
# Face-mesh points of the size model
FOREHEAD, CHIN = 10, 152
EYES = (33, 133, 263, 362)         # outer and inner corners of both eyes
MOUTH = (61, 291, 13, 14)          # mouth corners, inner lip midpoints
OUTER_EYES = (33, 263)
CHEEKS = (234, 454)
# Typical official box side / distance (geometric mean of the per-video medians over the five
# official sample videos; benchmarks/crop_calibration.py): each distance becomes a side estimate.
RATIO = {"forehead_chin": 1.08, "eyes_mouth": 2.78, "outer_eyes": 2.12, "cheeks": 1.34}
CONVENTION = (f"side={SIDE_SCALE}*mean(mean(forehead-chin, eyes-mouth), max(outer eyes, cheeks)) "
              f"as side estimates {RATIO}, shift={list(CENTER_SHIFT)}, gaussian smoothing")


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=-1)


def face_scale(landmarks: np.ndarray) -> np.ndarray:
    """(..., 468, 2 or 3) face-mesh points -> (...) the official box side they predict (before SIDE_SCALE).

    Vertical estimate: mean of forehead-chin (3D) and eye centre-mouth centre (2D, the distance least
    changed by yaw). Horizontal estimate: the larger of outer eye corners and cheek to cheek (3D, so
    a turned face is partly corrected by the mesh depth; the larger one is the less foreshortened).
    The result is the mean of both. Distances only: unchanged by in-plane rotation, mirroring and
    translation, proportional to scale. Uses the depth column when present.
    """
    if landmarks.shape[-2] != 468:
        raise ValueError(f"face_scale needs the 468 face-mesh points, got {landmarks.shape[-2]}")
    p3 = landmarks[..., :3]
    p2 = landmarks[..., :2]
    eyes, mouth = p2[..., EYES, :].mean(-2), p2[..., MOUTH, :].mean(-2)
    vertical = (RATIO["forehead_chin"] * _dist(p3[..., FOREHEAD, :], p3[..., CHIN, :])
                + RATIO["eyes_mouth"] * _dist(eyes, mouth)) / 2
    horizontal = np.maximum(RATIO["outer_eyes"] * _dist(p3[..., OUTER_EYES[0], :], p3[..., OUTER_EYES[1], :]),
                            RATIO["cheeks"] * _dist(p3[..., CHEEKS[0], :], p3[..., CHEEKS[1], :]))
    return (vertical + horizontal) / 2


def raw_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(T, 468, 2+) landmarks (NaN where no face) -> (T, 3) cx, cy, side in source pixels (NaN rows kept)."""
    pts = landmarks[..., :2]
    lo, hi = pts.min(1), pts.max(1)  # (T, 2)
    side = SIDE_SCALE * face_scale(landmarks)
    c = (lo + hi) / 2 + np.asarray(CENTER_SHIFT) * side[:, None]
    return np.concatenate([c, side[:, None]], 1)


def _fill(x: np.ndarray) -> np.ndarray:
    """Hold the last valid row over NaN rows (leading NaN rows take the first valid one)."""
    ok = ~np.isnan(x[:, 0])
    idx = np.where(ok, np.arange(len(x)), -1)
    idx = np.maximum.accumulate(idx)
    idx[idx < 0] = np.argmax(ok)
    return x[idx]


def _radius(sigma: float) -> int:
    """Half width of the Gaussian kernel of :func:`_gauss` (0: no smoothing)."""
    return int(3 * sigma + 0.5) if sigma > 0 else 0


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """Zero-phase Gaussian smoothing along axis 0 with edge replication. x: (T, C)."""
    if sigma <= 0 or len(x) < 2:
        return x
    r = _radius(sigma)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    xp = np.pad(x, ((r, r), (0, 0)), mode="edge")
    return np.stack([np.convolve(xp[:, i], k, mode="valid") for i in range(x.shape[1])], 1)


def smooth_boxes(boxes: np.ndarray, cuts=(), sigma_center: float = 2.0, sigma_side: float = 4.0) -> np.ndarray:
    """(T, 3) raw boxes (NaN = no face) -> (T, 3) filled and smoothed boxes.

    Frames without a face hold the nearest earlier box; smoothing never crosses a scene cut
    (``cuts``: frame indices that start a new shot). All-NaN input stays NaN.
    """
    out = np.full_like(boxes, np.nan, dtype=np.float64)
    edges = [0, *sorted(c for c in cuts if 0 < c < len(boxes)), len(boxes)]
    for a, b in zip(edges[:-1], edges[1:]):
        seg = boxes[a:b].astype(np.float64)
        if np.isnan(seg[:, 0]).all():
            continue
        seg = _fill(seg)
        out[a:b, :2] = _gauss(seg[:, :2], sigma_center)
        out[a:b, 2:] = _gauss(seg[:, 2:], sigma_side)
    if np.isnan(out[:, 0]).any() and not np.isnan(out[:, 0]).all():  # shots without any face
        out = _fill(out)
    return out


class BoxStream:
    """The boxes of :func:`smooth_boxes`, frame by frame, as soon as they are final (the same numbers).

    ``push(raw_box, cut)`` takes one frame's raw box (NaN: no face) and whether it starts a new shot, and returns
    the ``(index, box)`` pairs that became final, in frame order. A box is final once the raw boxes of its shot up
    to the smoothing radius ahead are known (or the shot has ended) and the shot has a face; frames of a shot
    without a face wait for its end (they hold the previous box), and leading ones for the first face. The
    pipeline uses it to crop and parse while it is still tracking, and checks the result against
    :func:`smooth_boxes` at the end.
    """

    def __init__(self, sigma_center: float = 2.0, sigma_side: float = 4.0):
        self.sigmas = (sigma_center, sigma_side)
        self.r = max(_radius(sigma_center), _radius(sigma_side))
        self.raw = np.empty((256, 3))  # growable: raw boxes of frames 0..n-1
        self.last_valid = np.empty(256, np.int64)  # last frame with a face in the same shot, up to each frame, or -1
        self.out = np.empty((256, 3))  # final boxes of frames 0..e-1
        self.n = self.e = 0
        self.starts = [0]  # first frame of each shot
        self.first_valid: dict[int, int] = {}  # shot start -> its first frame with a face

    @staticmethod
    def _grow(a: np.ndarray, n: int) -> np.ndarray:
        if n <= len(a):
            return a
        b = np.empty((2 * n,) + a.shape[1:], a.dtype)
        b[:len(a)] = a
        return b

    def push(self, raw_box: np.ndarray, cut: bool = False) -> list[tuple[int, np.ndarray]]:
        return self.extend(np.asarray(raw_box)[None], [cut])

    def extend(self, raw: np.ndarray, cuts) -> list[tuple[int, np.ndarray]]:
        """``push`` for several frames at once: raw (N, 3), cuts (N,) bool (cheaper: one smoothing window)."""
        for raw_box, cut in zip(raw, cuts):
            i = self.n
            if cut and i > 0:
                self.starts.append(i)
            self.raw = self._grow(self.raw, i + 1)
            self.last_valid = self._grow(self.last_valid, i + 1)
            self.raw[i] = raw_box
            valid = not np.isnan(raw_box[0])
            same = i > 0 and self.starts[-1] < i
            self.last_valid[i] = i if valid else (self.last_valid[i - 1] if same else -1)
            if valid:
                self.first_valid.setdefault(self.starts[-1], i)
            self.n = i + 1
        return self._advance()

    def _shot(self, j: int) -> tuple[int, int, bool]:
        """(start, end, ended) of the shot holding frame j; an open shot ends at n for now."""
        k = int(np.searchsorted(self.starts, j, side="right")) - 1
        if k + 1 < len(self.starts):
            return self.starts[k], self.starts[k + 1], True
        return self.starts[k], self.n, False

    def _smooth(self, a: int, b: int, j0: int, j1: int) -> np.ndarray:
        """Final boxes of frames j0..j1-1 of the shot [a, b) (which has a face), from a window of raw boxes wide
        enough that the kernel never reaches a padded edge other than the shot's own."""
        lo, hi = max(a, j0 - self.r), min(b, j1 + self.r)
        seg = self.raw[lo:hi].copy()
        if np.isnan(seg[0, 0]):  # the value smooth_boxes' fill gives this frame
            lv = self.last_valid[lo]
            seg[0] = self.raw[lv if lv >= 0 else self.first_valid[a]]
        seg = _fill(seg)
        rows = np.empty_like(seg)
        rows[:, :2] = _gauss(seg[:, :2], self.sigmas[0])
        rows[:, 2:] = _gauss(seg[:, 2:], self.sigmas[1])
        return rows[j0 - lo:j1 - lo]

    def _first_face_box(self) -> np.ndarray | None:
        """The final box of the first frame of the first shot with a face (leading shots without one take it)."""
        for a in self.starts:
            if a in self.first_valid:
                _, b, ended = self._shot(a)
                return self._smooth(a, b, a, a + 1)[0] if ended or a + self.r < self.n else None
        return None

    def _advance(self) -> list[tuple[int, np.ndarray]]:
        start = self.e
        while self.e < self.n:
            j = self.e
            a, b, ended = self._shot(j)
            if a in self.first_valid:
                end = b if ended else self.n - self.r
                if end <= j:
                    break
                rows = self._smooth(a, b, j, end)
            elif not ended:
                break
            else:  # a shot without a face holds the previous box; leading ones take the first face's
                box = self.out[j - 1] if j > 0 else self._first_face_box()
                if box is None:
                    break
                rows = np.repeat(box[None], b - j, 0)
            self.out = self._grow(self.out, j + len(rows))
            self.out[j:j + len(rows)] = rows
            self.e = j + len(rows)
        return [(j, self.out[j]) for j in range(start, self.e)]


def center_box(height: int, width: int) -> np.ndarray:
    """The --no-face=center fallback: the largest centred square, (3,) cx, cy, side."""
    return np.array([width / 2, height / 2, min(height, width)], np.float64)


def to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(..., 3) cx, cy, side -> (..., 4) x1, y1, x2, y2."""
    h = boxes[..., 2:] / 2
    return np.concatenate([boxes[..., :2] - h, boxes[..., :2] + h], -1)


def crop(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Crop the square ``box`` (cx, cy, side) from (H, W, 3) ``frame``, black outside, resized to (size, size, 3)."""
    cx, cy, side = (float(v) for v in box)
    k = side / size
    if k <= 2:  # sub-pixel accurate affine crop
        m = np.array([[k, 0, cx - side / 2], [0, k, cy - side / 2]])
        return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
    # strong downscaling: cut with padding, then area-average to avoid aliasing
    x1, y1 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = max(1, int(round(side)))
    h, w = frame.shape[:2]
    region = np.zeros((s, s, 3), np.uint8)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x1 + s, w), min(y1 + s, h)
    if sx2 > sx1 and sy2 > sy1:
        region[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = frame[sy1:sy2, sx1:sx2]
    return cv2.resize(region, (size, size), interpolation=cv2.INTER_AREA)


def landmarks_to_crop(landmarks: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(T, K, 2+) source-pixel landmarks -> (T, K, 2) crop pixels for crops of ``boxes`` (T, 3)."""
    origin = boxes[:, None, :2] - boxes[:, None, 2:] / 2
    return ((landmarks[..., :2] - origin) * (size / boxes[:, None, 2:])).astype(np.float32)
