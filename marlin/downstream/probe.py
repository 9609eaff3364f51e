"""`marlin probe`: linear probing of a dataset task on cached encoder features, over folds, few-shot
fractions and seeds; resumable (finished runs and cached features are reused)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..models.config import model_record
from .config import RunConfig
from .datasets import Dataset
from .features import dataset_features, dataset_record, feature_cache, feature_path, lp_device, run_feature_cache
from .fewshot import few_shot_indices
from .linear import predict, reduce_clips, train_linear, train_logistic
from .metrics import compute_metrics
from .model import load_encoder
from .runs import report_skipped, run_all
from .train import TrainConfig


def split_arrays(ds: Dataset, split: str, feats: dict, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) reduced features and targets of the samples of ``split`` that have features."""
    samples = [s for s in ds.splits.get(split, []) if s.key in feats]
    if not samples:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    return reduce_clips([feats[s.key] for s in samples], reduction), np.stack([np.asarray(s.target) for s in samples])


def cached_features(cfg: RunConfig, ds: Dataset, cache: Path, progress: bool, state: dict):
    """Features of every sample of ``ds`` for a run config; the encoder is loaded (once, into ``state``, on the
    run's device: `lp_device`) only when some cache file is missing."""
    samples = [s for split in ds.splits.values() for s in split]
    if state.get("model") is None and not all(feature_path(cache, s.key).is_file() for s in samples):
        state["model"] = load_encoder(cfg.encoder).to(lp_device(cfg))
    return dataset_features(samples, cache, state.get("model"), cfg.crop_face, cfg.windows.sample_rate,
                            cfg.windows.stride, cfg.batch_size_eval, progress)


def run_probe(cfg: RunConfig, progress: bool = True) -> dict:
    """Run a (loaded) probe config; returns the metrics.json data."""
    state: dict = {}

    def prepare(ds: Dataset, fold: int, notes: list):
        cache = run_feature_cache(cfg)
        feats, failures = cached_features(cfg, ds, cache, progress, state)
        report_skipped(Path(cfg.out), fold, failures, "videos")
        (xtr, ytr), (xva, yva), (xte, yte) = (split_arrays(ds, s, feats, cfg.reduction)
                                              for s in ("train", "val", "test"))
        if len(xtr) == 0 or len(xte) == 0:
            raise ValueError(f"{cfg.root}: no training or test samples with features ({ds.summary()})")
        if len(xva) == 0:
            xva, yva = None, None
            notes.append(f"fold {fold}: no validation samples; the training set selected the best epoch")
        task = ds.task

        if cfg.solver == "logistic" and xva is None:
            raise ValueError(f"{cfg.root}: solver logistic chooses its L2 penalty on the validation split, "
                             f"and fold {fold} has none (use solver sgd)")

        def train(frac: float, seed: int):
            idx = few_shot_indices(ytr, frac, task.kind, seed)
            run = {"n_train": int(len(idx)), "n_val": 0 if xva is None else int(len(xva)), "n_test": int(len(xte)),
                   "solver": cfg.solver, "failed_inputs": len(ds.skipped) + len(failures)}
            if cfg.solver == "logistic":
                head, penalty, val, by_penalty = train_logistic(task, xtr[idx], ytr[idx], xva, yva)
                run.update(penalty=penalty, val_by_penalty=by_penalty, monitor=task.metric, val=val)
            else:
                tc = TrainConfig.from_dict({**cfg.train, "seed": seed})
                head, res = train_linear(task, xtr[idx], ytr[idx], xva, yva, tc, progress)
                run.update(best_epoch=res.best_epoch, monitor=res.monitor, val=res.val_metrics, history=res.history,
                           train_config=tc.to_dict())
            run["test"] = compute_metrics(task.kind, task.scores(predict(head, xte)), yte,
                                          label_names=task.labels)
            return run, "head.safetensors", head.state_dict(), {"reduction": cfg.reduction}
        return train

    return run_all(cfg, "probe", prepare)


def probe_dataset(model, ds: Dataset, cache_dir, reduction: str = "mean", seed: int = 0, few_shot: float = 1.0,
                  sample_rate: int = 2, stride: int = 16, progress: bool = False, precision: str = "32",
                  **train_options) -> dict:
    """Linear-probe one dataset task with ``model``'s frozen features (cached under ``cache_dir``, in a folder
    of its own keyed by the model's weights, the windows and the dataset, see `feature_cache`).

    Python entry point for scripts such as the demo: returns `linear_probe`'s dict plus "skipped".
    ``train_options`` override the in-memory defaults (`marlin.downstream.linear.LP_DEFAULTS`); ``precision``
    of the extraction: auto | 32 | bf16 | 16 (GPUs), resolved for the model's device and part of the cache record.
    """
    from ..precision import Precision
    from .linear import linear_probe

    samples = [s for split in ds.splits.values() for s in split]
    record = dataset_record(model_record(model), sample_rate, stride, False, ds.name,
                            os.path.commonpath([str(s.source) for s in samples]),
                            precision=Precision.resolve(precision, model.device))
    cache = feature_cache(cache_dir, record, "model")
    feats, failures = dataset_features(samples, cache, model, sample_rate=sample_rate, stride=stride,
                                       progress=progress)
    (xtr, ytr), (xva, yva), (xte, yte) = (split_arrays(ds, s, feats, reduction) for s in ("train", "val", "test"))
    if len(xtr) == 0 or len(xte) == 0:
        raise ValueError(f"no training or test samples with features ({ds.summary()})")
    idx = few_shot_indices(ytr, few_shot, ds.task.kind, seed)
    out = linear_probe(xtr[idx], ytr[idx], xva if len(xva) else None, yva if len(xva) else None, xte, yte,
                       task_type=ds.task.kind, seed=seed, label_names=ds.task.labels, progress=progress,
                       **train_options)
    out["task"]["name"] = ds.task.name
    out["skipped"] = ds.skipped + failures
    return out
