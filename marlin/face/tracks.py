"""Every face in a video: many face tracks at once (``marlin preprocess --faces all``).

The identity rule (docs/face_pipeline.md, *Every face*):

1. Within a shot, a face followed from frame to frame by its landmarks (as the one-face tracker follows it) keeps
   its track. When two followed faces come to cover the same face (boxes overlapping by IoU > 0.5, e.g. two faces
   crossing), the track whose appearance matches it better keeps it; the other is lost for now.
2. The detector runs on every frame; a detected face that no followed face covers is a *new face*. A new face is
   matched against the *lost tracks* (not seen in this frame, last seen at most ``max_gap`` frames ago):
   - a track lost in the same shot is a candidate when its last box overlaps the new face (IoU >= ``min_iou``).
     One candidate: the face continues it. Several (overlap is ambiguous, e.g. after faces crossed): the candidate
     of the most similar appearance;
   - a track last seen before a scene cut: the position says nothing (the camera changed, faces may have swapped
     places), so overlap is ambiguous by definition and appearance decides: the face continues the most similar
     such track if the similarity is at least ``min_similarity``, else it starts a new track.
   Pairs are assigned one to one, overlap matches first, then by similarity.
3. A face that continues no track starts a new one.

Appearance (``appearance``) is the face square as a small grey thumbnail, compared by normalised correlation
(1 = the same picture up to brightness and contrast) with the running mean of the track's thumbnails: it tells
faces apart by their shading, hair line and features under similar pose. It is not face recognition: the same
person seen from a very different angle after a cut may start a new track, and two people who look alike in
the same pose can be taken for one.

Tracks are numbered after the video (``assemble``): tracks with fewer than ``min_track_frames`` frames with a face
are dropped, the rest are ordered by first frame, then by the left edge of their first box, as face0, face1, ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import crop as C
from .detector import FaceDetector, iou
from .landmarks import FaceLandmarker, roi_from_detection, roi_from_landmarks
from .tracker import FaceTracker, _thumb

_THUMB = 24  # side of the appearance thumbnail


def appearance(frame: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB frame and one face's (468, 2+) landmarks -> the appearance descriptor: the face
    square (the crop box before smoothing) as a 24x24 grey thumbnail, zero mean, unit norm."""
    box = C.raw_boxes(pts[None])[0]
    grey = cv2.cvtColor(C.crop(frame, box, _THUMB), cv2.COLOR_RGB2GRAY).astype(np.float64).ravel()
    grey -= grey.mean()
    return grey / max(float(np.linalg.norm(grey)), 1e-9)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two appearance descriptors (or running means of them): 1 for equal ones."""
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def landmark_box(pts: np.ndarray) -> np.ndarray:
    """(468, 2+) landmarks -> (4,) x1, y1, x2, y2."""
    return np.concatenate([pts[:, :2].min(0), pts[:, :2].max(0)])


@dataclass
class _Track:
    id: int
    pts: np.ndarray | None  # landmarks of the last frame, None once lost
    box: np.ndarray  # landmark box of the last frame with the face
    last: int  # last frame with the face
    shot: int  # shot of that frame
    look: np.ndarray  # running mean appearance
    seen: int = 1

    def update(self, pts: np.ndarray, look: np.ndarray, frame: int, shot: int) -> None:
        self.pts, self.box, self.last, self.shot = pts, landmark_box(pts), frame, shot
        self.seen += 1
        self.look = self.look + (look - self.look) / min(self.seen, 10)  # mean of the first ten, then moving


class MultiFaceTracker:
    """Call ``step(frame)`` once per frame in order; it returns ``{track id: (468, 3) landmarks}`` of the faces
    in that frame. The rule is the module's docstring. ``max_gap``: frames a lost track can be resumed after."""

    def __init__(self, detector: FaceDetector, landmarker: FaceLandmarker, max_gap: int = 60,
                 min_iou: float = 0.3, min_similarity: float = 0.6, cut_threshold: float = 30.0):
        self.detector, self.landmarker = detector, landmarker
        # the one-face tracker's acceptance rule (presence score, finite points, minimum size)
        self._accept = FaceTracker(detector, landmarker, cut_threshold=cut_threshold)._accept
        self.max_gap, self.min_iou, self.min_similarity = max_gap, min_iou, min_similarity
        self.cut_threshold = cut_threshold
        self.tracks: list[_Track] = []
        self.frame = -1
        self.shot = 0
        self.cuts: list[int] = []  # frames that start a new shot
        self._thumb = None
        self.stats = {"cuts": 0, "new_tracks": 0, "resumed": 0, "resumed_after_cut": 0}

    def _follow(self, frame: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Rule 1: follow every tracked face by its landmarks; overlapping ones keep the better-matching track."""
        followed = {}
        for t in self.tracks:
            if t.pts is None:
                continue
            pts, score = self.landmarker.landmarks(frame, roi_from_landmarks(t.pts))
            if self._accept(pts, score):
                followed[t.id] = (pts, appearance(frame, pts))
            else:
                t.pts = None
        by_id = {t.id: t for t in self.tracks}
        ids = sorted(followed, key=lambda i: -similarity(by_id[i].look, followed[i][1]))
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for i in ids:
            if all(iou(landmark_box(followed[i][0]), landmark_box(kept[j][0])) <= 0.5 for j in kept):
                kept[i] = followed[i]
            else:
                by_id[i].pts = None  # covered by a face that matches its own track better
        return kept

    def _new_faces(self, frame: np.ndarray, followed: dict) -> list[tuple[np.ndarray, np.ndarray]]:
        """Rule 2's new faces: detections no followed face covers, with their landmarks and appearance."""
        taken = [landmark_box(p) for p, _ in followed.values()]
        new = []
        for det in self.detector.detect(frame):
            if any(iou(det.box, b) > self.min_iou for b in taken):
                continue
            pts, score = self.landmarker.landmarks(frame, roi_from_detection(det))
            if not self._accept(pts, score):
                continue
            box = landmark_box(pts)
            if any(iou(box, b) > 0.5 for b in taken):
                continue
            taken.append(box)
            new.append((pts, appearance(frame, pts)))
        return new

    def _match(self, new: list) -> dict[int, int]:
        """Rule 2's assignment: {new face index: lost track id}."""
        lost = [t for t in self.tracks if t.pts is None and self.frame - t.last <= self.max_gap]
        pairs = []  # (rank, -score, face, track): overlap matches (rank 0) before appearance ones (rank 1)
        for k, (pts, look) in enumerate(new):
            box = landmark_box(pts)
            overlapping = [t for t in lost if t.shot == self.shot and iou(box, t.box) >= self.min_iou]
            for t in overlapping:
                pairs.append((0, -(similarity(t.look, look) if len(overlapping) > 1 else 1.0), k, t.id))
            for t in lost:
                s = similarity(t.look, look)
                if t.shot < self.shot and s >= self.min_similarity:
                    pairs.append((1, -s, k, t.id))
        out, used = {}, set()
        for _, _, k, tid in sorted(pairs):
            if k not in out and tid not in used:
                out[k] = tid
                used.add(tid)
        return out

    def step(self, frame: np.ndarray) -> dict[int, np.ndarray]:
        self.frame += 1
        th = _thumb(frame)
        if self._thumb is not None and np.abs(th - self._thumb).mean() > self.cut_threshold:
            self.shot += 1
            self.cuts.append(self.frame)
            self.stats["cuts"] += 1
            for t in self.tracks:
                t.pts = None  # a cut: every face is found anew and matched by rule 2
        self._thumb = th
        followed = self._follow(frame)
        new = self._new_faces(frame, followed)
        by_id = {t.id: t for t in self.tracks}
        for tid, (pts, look) in followed.items():
            by_id[tid].update(pts, look, self.frame, self.shot)
        out = {tid: pts for tid, (pts, _) in followed.items()}
        matched = self._match(new)
        for k, (pts, look) in enumerate(new):
            if k in matched:
                t = by_id[matched[k]]
                self.stats["resumed_after_cut" if t.shot < self.shot else "resumed"] += 1
                t.update(pts, look, self.frame, self.shot)
            else:
                t = _Track(len(self.tracks), pts, landmark_box(pts), self.frame, self.shot, look)
                self.tracks.append(t)
                self.stats["new_tracks"] += 1
            out[t.id] = pts
        return out


@dataclass
class FaceTrack:
    """One kept face track: its name ("face<k>"), number k, and its frames [start, stop) of the source."""

    name: str
    track: int
    start: int
    stop: int
    landmarks: np.ndarray  # (stop - start, 468, 3) source pixels, NaN where the face was not found
    cuts: list = field(default_factory=list)  # scene cuts inside the track, relative to start

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.landmarks[:, 0, 0])

    @property
    def frame_range(self) -> list[int]:
        """[first, last] source frame (inclusive) of the track, as meta.json records it."""
        return [self.start, self.stop - 1]


def assemble(per_frame: list[dict[int, np.ndarray]], cuts: list[int], min_track_frames: int = 16) -> list[FaceTrack]:
    """The tracker's per-frame output -> the kept tracks, numbered in the documented order (first frame, then the
    left edge of the first box); each track covers its first to its last frame with a face."""
    frames: dict[int, list[int]] = {}
    for i, faces in enumerate(per_frame):
        for tid in faces:
            frames.setdefault(tid, []).append(i)
    kept = [tid for tid, idx in frames.items() if len(idx) >= min_track_frames]
    kept.sort(key=lambda tid: (frames[tid][0], float(per_frame[frames[tid][0]][tid][:, 0].min())))
    out = []
    for k, tid in enumerate(kept):
        start, stop = frames[tid][0], frames[tid][-1] + 1
        lms = np.full((stop - start, 468, 3), np.nan, np.float32)
        for i in frames[tid]:
            lms[i - start] = per_frame[i][tid]
        out.append(FaceTrack(f"face{k}", k, start, stop, lms, [c - start for c in cuts if start < c < stop]))
    return out
