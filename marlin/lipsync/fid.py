"""Fréchet Inception Distance with a pluggable feature extractor whose weights come from a user-supplied file
(nothing is downloaded). Built in: ``inception`` (the FID InceptionV3 of pytorch-fid; give it
``pt_inception-2015-12-05-*.pth``) and ``marlin`` (a MARLIN encoder checkpoint; each frame is fed as a static
clip and the pooled feature used). `register_extractor` adds others."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

# name -> builder(weights_path, **options) -> callable (N, 3, H, W) float [0, 1] -> (N, D)
EXTRACTORS: dict[str, Callable] = {}


def register_extractor(name: str):
    def deco(builder):
        EXTRACTORS[name] = builder
        return builder
    return deco


def load_extractor(name: str, weights, **options):
    """The extractor ``name`` with weights from ``weights`` (loaded safely)."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown FID feature extractor {name!r}; choose one of {sorted(EXTRACTORS)}")
    if weights is None:
        raise ValueError(f"the {name!r} FID extractor needs a weights file (nothing is downloaded)")
    return EXTRACTORS[name](weights, **options)


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> mean (D,), covariance (D, D) (unbiased)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need at least 2 feature vectors (N, D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), for symmetric PSD covariances."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    r1 = _sqrt_psd(s1)
    w = np.linalg.eigvalsh(r1 @ s2 @ r1)
    covmean_trace = np.sqrt(np.clip(w, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * covmean_trace)


@torch.no_grad()
def features(extractor, frames: Iterable[np.ndarray], batch: int = 32) -> np.ndarray:
    """Frames (H, W, 3) uint8 -> (N, D) features."""
    from .data import to_tensor

    out, buf = [], []
    for f in frames:
        buf.append(f)
        if len(buf) == batch:
            out.append(np.asarray(extractor(to_tensor(np.stack(buf)))))
            buf = []
    if buf:
        out.append(np.asarray(extractor(to_tensor(np.stack(buf)))))
    if not out:
        raise ValueError("no frames to compute FID features from")
    return np.concatenate(out)


def fid(extractor, frames_a: Iterable[np.ndarray], frames_b: Iterable[np.ndarray], batch: int = 32) -> float:
    """FID between two sets of frames."""
    return frechet_distance(*statistics(features(extractor, frames_a, batch)),
                            *statistics(features(extractor, frames_b, batch)))


@register_extractor("marlin")
def marlin_extractor(weights, config=None, device: str = "cpu"):
    """MARLIN encoder features (mean over tokens, final norm) of each frame repeated as a static clip."""
    import torch.nn.functional as F

    from ..models import Marlin

    model = Marlin.from_file(config, weights, full_model=False).eval().to(device)
    c = model.config

    def run(x: Tensor) -> np.ndarray:  # (N, 3, H, W) -> (N, D)
        x = F.interpolate(x.to(device), size=(c.img_size, c.img_size), mode="bilinear", align_corners=False)
        clip = x[:, :, None].expand(-1, -1, c.n_frames, -1, -1)
        return model.extract_features(clip, keep_seq=False).cpu().numpy()

    return run


@register_extractor("inception")
def inception_extractor(weights, device: str = "cpu"):
    """pytorch-fid's InceptionV3 pool3 features (2048-d) from its weights file."""
    from .inception import FIDInceptionV3

    net = FIDInceptionV3.from_file(weights).eval().to(device)
    return lambda x: net(x.to(device)).cpu().numpy()
