"""The linear-probing feature cache: ``<folder>/<key>.npy`` (n_clips, D) per video, the layout written by
`marlin extract`; missing files are computed with the frozen encoder and written atomically.

A cache folder holds a ``features.json`` record of everything that determines its features (encoder weights
fingerprint and architecture, windows, face crop, precision, dataset root and options) and is used only by a
run with the same record: `feature_cache` picks ``<features>/<encoder>-<digest>/`` for a run config (or a
folder given directly, e.g. a `marlin extract` output, whose record must match) and refuses, naming the
difference, to read features made otherwise."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..atomic import save_npy, write_json
from ..devices import resolve_device
from ..extract import (FEATURES_RECORD, PROVENANCE, clips_per_call, device_label, encode_clips, features_record,
                       merge_provenance, record_differences, video_features)
from ..models.config import encoder_record
from ..precision import Precision
from ..video import VideoError
from .datasets.base import DatasetError, Sample
from .sources import eval_clips, materialize



def lp_device(cfg) -> torch.device:
    """Where a probe run's frozen encoder computes the features its cache lacks: the run config's ``device``
    (auto: cuda when available, else cpu), as fine-tuning (`marlin.devices.resolve_device`)."""
    return resolve_device(cfg.device)


def probe_precision(cfg) -> Precision:
    """The precision a probe run's features are extracted in: its ``extract_precision`` resolved for `lp_device`
    (the run hash and the feature cache's record both take it from here)."""
    return Precision.resolve(cfg.extract_precision, lp_device(cfg))


def check_record(folder: Path, expected: dict) -> None:
    """Refuse a cache folder whose features.json differs from ``expected`` (keys the folder's record does not
    hold, e.g. the dataset root of a `marlin extract` output, are not compared), naming each difference."""
    path = Path(folder) / FEATURES_RECORD
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(path, f"unreadable feature record ({e})") from None
    diff = record_differences(found, expected)
    if diff:
        raise DatasetError(folder, "these cached features were made with other settings than this run's ("
                                   + "; ".join(diff) + "): point `features` at another folder or delete this one")


def dataset_record(encoder: dict, sample_rate: int, stride: int, crop_face: bool, dataset: str, root,
                   dataset_options: dict | None = None, precision: Precision = Precision.FP32) -> dict:
    """The features.json record of a dataset's cache: a `features_record` (``encoder``: an `encoder_record`;
    ``precision``: a resolved one) plus the dataset it was extracted from."""
    record = features_record(encoder, sample_rate, stride, crop_face, precision=precision)
    record.update(dataset=dataset, root=os.path.abspath(root), dataset_options=dataset_options or {})
    return record


def run_record(cfg) -> dict:
    """The features.json record a `RunConfig` needs (at its `probe_precision`)."""
    enc = cfg.encoder
    if enc.weights is None:
        raise ValueError("encoder.weights is required: a checkpoint file, or 'random'")
    return dataset_record(encoder_record(enc.model, enc.weights, enc.seed), cfg.windows.sample_rate,
                          cfg.windows.stride, cfg.crop_face, cfg.dataset, cfg.root, cfg.dataset_options,
                          probe_precision(cfg))


def feature_cache(base, record: dict, label: str = "encoder") -> Path:
    """The cache folder for ``record`` under ``base`` (created with its record), or ``base`` itself when it
    holds a features.json (a `marlin extract` output), checked either way."""
    base = Path(base)
    if (base / FEATURES_RECORD).is_file():
        check_record(base, record)
        return base
    if base.is_dir() and any(base.glob("*.npy")):
        raise DatasetError(base, "holds features without a features.json record, so nothing tells which encoder, "
                                 "windows and crop made them: delete them, or re-extract with `marlin extract` "
                                 "(which writes the record)")
    identity = {k: v for k, v in record.items() if k not in PROVENANCE}  # the same folder on every device
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    leaf = base / f"{label}-{digest}"
    if (leaf / FEATURES_RECORD).is_file():
        check_record(leaf, record)
    else:
        write_json(leaf / FEATURES_RECORD, record)
    return leaf


def run_feature_cache(cfg) -> Path:
    """The checked feature cache folder of a probe run config (base: ``features``, default ``<out>/features``)."""
    label = Path(str(cfg.encoder.model or cfg.encoder.weights)).stem
    return feature_cache(cfg.features or Path(cfg.out) / "features", run_record(cfg), label)


def record_precision(cache_dir: Path) -> Precision:
    """The precision a cache folder's features are (to be) computed in: its features.json record's (float32 for
    a record from before precision was recorded), so a folder never mixes precisions."""
    path = Path(cache_dir) / FEATURES_RECORD
    try:
        return Precision.named(json.loads(path.read_text()).get("precision", "32"))
    except (OSError, ValueError) as e:
        raise DatasetError(path, f"unreadable feature record ({e})") from None


def note_device(cache_dir: Path, device) -> bool:
    """List ``device`` in the ``devices`` of a cache folder's record (provenance, not compared: a cache begun on
    a CPU is completed on a GPU and the other way round, see `marlin.extract.features_record`)."""
    path = Path(cache_dir) / FEATURES_RECORD
    if path.is_file():
        merge_provenance(path, json.loads(path.read_text()), {"devices": [device_label(device)]})
    return True


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
        raise DatasetError(path, f"features have D = {arr.shape[1]} but the encoder gives {dim}")
    return arr.astype(np.float32)


@torch.no_grad()
def compute_features(model, source: Path, crop_face: bool = False, sample_rate: int = 2, stride: int = 16,
                     batch_size: int | None = None, precision: Precision = Precision.FP32) -> np.ndarray:
    """(n_clips, D) features of a video file (via `video_features`) or a frame directory; ``batch_size``: clips
    per encoder call, default `marlin.extract.clips_per_call`."""
    source = Path(source)
    if not source.is_dir():
        return video_features(model, source, crop_face=crop_face, sample_rate=sample_rate, stride=stride,
                              batch_size=batch_size, precision=precision).numpy()
    model.eval()
    cfg = model.config
    clips = eval_clips(source, cfg.n_frames, cfg.img_size, sample_rate, stride)
    return encode_clips(lambda x: model.extract_features(x, keep_seq=False, precision=precision), clips,
                        clips_per_call(cfg, model.device, batch_size), model.device).numpy()


def dataset_features(samples: list[Sample], cache_dir: Path, model=None, crop_face: bool = False,
                     sample_rate: int = 2, stride: int = 16, batch_size: int | None = None,
                     progress: bool = True) -> tuple[dict[str, np.ndarray], list[str]]:
    """key -> (n_clips, D) for every sample; cached files are reused, missing ones computed with ``model``
    (none: they are reported) on the model's device, in the precision of the folder's record (`feature_cache`
    wrote it), which lists the device once it has computed one (`note_device`). Returns (features, failures as
    "path: problem") - a bad video is skipped."""
    from tqdm.auto import tqdm

    dim = model.config.encoder_embed_dim if model is not None else None
    precision = record_precision(cache_dir) if (Path(cache_dir) / FEATURES_RECORD).is_file() else Precision.FP32
    out, failures, noted = {}, [], False
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
            feats = compute_features(model, materialize(s, cache_dir), crop_face, sample_rate, stride, batch_size,
                                     precision)
            if not noted:
                noted = note_device(cache_dir, model.device)
            save_npy(path, feats.astype(np.float32))
            out[s.key] = feats.astype(np.float32)
        except (VideoError, DatasetError, OSError, ValueError) as e:
            failures.append(str(e))
    return out, failures
