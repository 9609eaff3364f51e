"""`marlin probe`: linear probing of a dataset task on cached encoder features, over folds, few-shot
fractions and seeds; resumable (finished runs and cached features are reused)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from .datasets import Dataset, load_dataset, num_folds
from .features import dataset_features, feature_path
from .fewshot import few_shot_indices
from .linear import predict, reduce_clips, train_linear
from .metrics import compute_metrics
from .model import load_encoder, save_checkpoint
from .report import write_json, write_results, write_text
from .train import TrainConfig


def run_hash(cfg: dict, *parts) -> str:
    keys = ("dataset", "root", "task", "dataset_options", "encoder", "crop_face", "windows", "reduction", "train")
    blob = json.dumps([{k: cfg.get(k) for k in keys}, *parts], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def run_name(fold: int, frac: float, seed: int) -> str:
    return f"fold{fold}_fs{frac * 100:g}pct_seed{seed}"


def report_skipped(out: Path, fold: int, skipped: list[str], what: str) -> None:
    """Bad or missing inputs are reported (stderr + skipped_<what>_fold<k>.txt) and left out."""
    if not skipped:
        return
    print(f"warning: {len(skipped)} {what} left out (fold {fold}), e.g. {skipped[0]}; "
          f"all in {out / f'skipped_{what}_fold{fold}.txt'}", file=sys.stderr)
    write_text(out / f"skipped_{what}_fold{fold}.txt", "\n".join(skipped) + "\n")


def split_arrays(ds: Dataset, split: str, feats: dict, reduction: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) reduced features and targets of the samples of ``split`` that have features."""
    samples = [s for s in ds.splits.get(split, []) if s.key in feats]
    if not samples:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    return reduce_clips([feats[s.key] for s in samples], reduction), np.stack([np.asarray(s.target) for s in samples])


def _features(cfg: dict, ds: Dataset, cache: Path, progress: bool, state: dict):
    samples = [s for split in ds.splits.values() for s in split]
    if state.get("model") is None and not all(feature_path(cache, s.key).is_file() for s in samples):
        state["model"] = load_encoder(cfg["encoder"])
    return dataset_features(samples, cache, state.get("model"), cfg["crop_face"], cfg["windows"]["sample_rate"],
                            cfg["windows"]["stride"], cfg["batch_size_eval"], progress)


def run_probe(cfg: dict, progress: bool = True) -> dict:
    """Run a (loaded) probe config; returns the metrics.json data."""
    out = Path(cfg["out"] or f"runs/{cfg['dataset']}_{cfg['task'] or 'default'}_lp")
    cfg["out"] = str(out)
    cache = Path(cfg["features"] or out / "features")
    folds = cfg["folds"] or list(range(1, num_folds(cfg["dataset"]) + 1))
    runs, notes, state, task = [], [], {}, None
    for fold in folds:
        ds = load_dataset(cfg["dataset"], cfg["root"], cfg["task"], fold=fold, **cfg["dataset_options"])
        task = ds.task
        print(f"fold {fold}: {ds.summary()}", file=sys.stderr)
        report_skipped(out, fold, ds.skipped, "samples")
        feats, failures = _features(cfg, ds, cache, progress, state)
        report_skipped(out, fold, failures, "videos")
        (xtr, ytr), (xva, yva), (xte, yte) = (split_arrays(ds, s, feats, cfg["reduction"])
                                              for s in ("train", "val", "test"))
        if len(xtr) == 0 or len(xte) == 0:
            raise ValueError(f"{cfg['root']}: no training or test samples with features ({ds.summary()})")
        if len(xva) == 0:
            xva, yva = None, None
            notes.append(f"fold {fold}: no validation samples; the training set selected the best epoch")
        for frac in cfg["few_shot"]:
            frac = float(frac)
            for seed in cfg["seeds"]:
                name, h = run_name(fold, frac, int(seed)), run_hash(cfg, fold, frac, seed)
                run_dir = out / name
                done = run_dir / "metrics.json"
                if done.is_file() and json.loads(done.read_text()).get("hash") == h:
                    runs.append(json.loads(done.read_text()))
                    continue
                idx = few_shot_indices(ytr, frac, task.kind, int(seed))
                tc = TrainConfig.from_dict({**cfg["train"], "seed": int(seed)})
                head, res = train_linear(task, xtr[idx], ytr[idx], xva, yva, tc, progress)
                test = compute_metrics(task.kind, task.scores(predict(head, xte)), yte, label_names=task.labels
                                       if task.kind != "binary" else None)
                run = {"name": name, "hash": h, "fold": fold, "seed": int(seed), "few_shot": frac,
                       "n_train": int(len(idx)), "n_val": 0 if xva is None else int(len(xva)), "n_test": int(len(xte)),
                       "best_epoch": res.best_epoch, "monitor": res.monitor, "val": res.val_metrics, "test": test,
                       "history": res.history}
                meta = {"mode": "probe", "task": task.to_dict(), "reduction": cfg["reduction"],
                        "run": {k: v for k, v in cfg.items() if k != "source"}, "fold": fold, "seed": int(seed),
                        "few_shot": frac}
                save_checkpoint(run_dir / "head.safetensors", head.state_dict(), meta)
                write_json(done, run)
                runs.append(run)
    title = f"Linear probing: {cfg['dataset']} / {task.name}"
    extra = {"mode": "probe", "config": {k: v for k, v in cfg.items()}, "task": task.to_dict()}
    slim = [{k: v for k, v in r.items() if k != "history"} for r in runs]
    return write_results(out, title, task.kind, slim, extra, notes)


def probe_dataset(model, ds: Dataset, cache_dir, reduction: str = "mean", seed: int = 0, few_shot: float = 1.0,
                  sample_rate: int = 2, stride: int = 16, progress: bool = False, **train_options) -> dict:
    """Linear-probe one dataset task with ``model``'s frozen features (cached in ``cache_dir``).

    Python entry point for scripts such as the demo: returns `linear_probe`'s dict plus "skipped".
    ``train_options`` override the in-memory defaults (`marlin.downstream.linear.LP_DEFAULTS`).
    """
    from .linear import linear_probe

    samples = [s for split in ds.splits.values() for s in split]
    feats, failures = dataset_features(samples, Path(cache_dir), model, sample_rate=sample_rate, stride=stride,
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
