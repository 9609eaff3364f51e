"""The linear-probing feature cache: ``<features>/<key>.npy`` (n_clips, D) per video, the layout written
by `marlin extract`; missing files are computed with the frozen encoder and written atomically."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..atomic import save_npy
from ..extract import encode_clips, video_features
from ..video import VideoError
from .datasets.base import DatasetError, Sample
from .sources import eval_clips, materialize


def feature_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}.npy"


def load_cached(path: Path, dim: int | None = None) -> np.ndarray:
    """(n_clips, D) float32 from a cache file, checked."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DatasetError(path, f"not a readable feature file ({e})") from None
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or len(arr) == 0:
        raise DatasetError(path, f"expected features (n_clips, D), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise DatasetError(path, f"features have D = {arr.shape[1]} but the encoder gives {dim}: "
                                 f"stale cache from another model? delete it")
    return arr.astype(np.float32)


@torch.no_grad()
def compute_features(model, source: Path, crop_face: bool = False, sample_rate: int = 2, stride: int = 16,
                     batch_size: int = 8) -> np.ndarray:
    """(n_clips, D) features of a video file (via `video_features`) or a frame directory."""
    source = Path(source)
    if not source.is_dir():
        return video_features(model, source, crop_face=crop_face, sample_rate=sample_rate, stride=stride,
                              batch_size=batch_size).numpy()
    model.eval()
    cfg = model.config
    clips = eval_clips(source, cfg.n_frames, cfg.img_size, sample_rate, stride)
    return encode_clips(lambda x: model.extract_features(x, keep_seq=False), clips, batch_size).numpy()


def dataset_features(samples: list[Sample], cache_dir: Path, model=None, crop_face: bool = False,
                     sample_rate: int = 2, stride: int = 16, batch_size: int = 8,
                     progress: bool = True) -> tuple[dict[str, np.ndarray], list[str]]:
    """key -> (n_clips, D) for every sample; cached files are reused, missing ones computed with ``model``
    (none: they are reported). Returns (features, failures as "path: problem") - a bad video is skipped."""
    from tqdm.auto import tqdm

    dim = model.config.encoder_embed_dim if model is not None else None
    out, failures = {}, []
    for s in tqdm(samples, desc="features", disable=not progress, leave=False):
        if s.key in out:
            continue
        path = feature_path(cache_dir, s.key)
        try:
            if path.is_file():
                out[s.key] = load_cached(path, dim)
                continue
            if model is None:
                raise DatasetError(path, "no cached features and no model to compute them")
            feats = compute_features(model, materialize(s, cache_dir), crop_face, sample_rate, stride, batch_size)
            save_npy(path, feats.astype(np.float32))
            out[s.key] = feats.astype(np.float32)
        except (VideoError, DatasetError, OSError, ValueError) as e:
            failures.append(str(e))
    return out, failures
