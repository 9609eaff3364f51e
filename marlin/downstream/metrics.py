"""Task metrics on top of torchmetrics: accuracy, AUC, macro-F1 (all tasks), weighted accuracy (binary /
multi-label), UAR and WAR (multi-class).

Multi-label ``auc`` is the official MARLIN evaluation (ControlNet/MARLIN ``evaluate.py``: one binary AUROC over
all N x L predictions flattened); the mean of the per-label AUCs is reported separately as ``auc_label_mean``.
Scores may be logits or probabilities (sigmoid / softmax are applied when values fall outside [0, 1]).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..errors import require

C = require("torchmetrics.functional.classification", "downstream", "downstream evaluation")

TASK_TYPES = ("multilabel", "multiclass", "binary")
DECISION_THRESHOLD = 0.5  # probability at and above which a binary / multi-label output counts as 1


def _tensor(x, dtype=None) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(dtype) if dtype is not None else t


def _nanmean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _binary_stats(probs: torch.Tensor, target: torch.Tensor, threshold: float) -> dict:
    """Per-column stats of a binary problem: probs, target (N, L) -> dict of (L,) arrays."""
    pred = probs >= threshold
    tgt = target.bool()
    tp = (pred & tgt).sum(0).double()
    tn = (~pred & ~tgt).sum(0).double()
    fp = (pred & ~tgt).sum(0).double()
    fn = (~pred & tgt).sum(0).double()
    return dict(tp=tp, tn=tn, fp=fp, fn=fn)


def _binary_columns(probs: torch.Tensor, target: torch.Tensor, threshold: float) -> dict:
    """Accuracy, weighted (balanced) accuracy, F1 and AUC of each column of (N, L) binary problems."""
    s = _binary_stats(probs, target, threshold)
    n = target.shape[0]
    acc = ((s["tp"] + s["tn"]) / n).tolist()
    pos, neg = s["tp"] + s["fn"], s["tn"] + s["fp"]
    tpr = torch.where(pos > 0, s["tp"] / pos.clamp(min=1), torch.nan)
    tnr = torch.where(neg > 0, s["tn"] / neg.clamp(min=1), torch.nan)
    wacc = ((tpr + tnr) / 2).tolist()
    denom = 2 * s["tp"] + s["fp"] + s["fn"]
    f1 = torch.where(denom > 0, 2 * s["tp"] / denom.clamp(min=1), torch.zeros_like(denom)).tolist()
    denom_neg = 2 * s["tn"] + s["fp"] + s["fn"]
    f1_neg = torch.where(denom_neg > 0, 2 * s["tn"] / denom_neg.clamp(min=1), torch.zeros_like(denom)).tolist()
    auc = []
    for j in range(target.shape[1]):
        col = target[:, j].long()
        # AUC is undefined when a label has a single class in the targets: left out of the mean.
        if 0 < int(col.sum()) < n:
            auc.append(float(C.binary_auroc(probs[:, j], col)))
        else:
            auc.append(float("nan"))
    return dict(acc=acc, wacc=wacc, f1=f1, f1_neg=f1_neg, auc=auc, **{k: v.tolist() for k, v in s.items()})


def _flat_auc(probs: torch.Tensor, target: torch.Tensor) -> float:
    """One binary AUROC over every (sample, label) pair, as the official CelebV-HQ evaluation computes it."""
    p, t = probs.reshape(-1), target.reshape(-1).long()
    if not 0 < int(t.sum()) < len(t):
        return float("nan")  # a single class over all pairs: undefined
    return float(C.binary_auroc(p, t))


def _as_probs(scores: torch.Tensor, kind: str) -> torch.Tensor:
    scores = scores.float()
    inside = bool(((scores >= 0) & (scores <= 1)).all())
    if kind == "multiclass":
        return scores if inside and torch.allclose(scores.sum(1), torch.ones(len(scores)), atol=1e-4) \
            else scores.softmax(1)
    return scores if inside else scores.sigmoid()


def compute_metrics(task_type: str, scores, targets, threshold: float = DECISION_THRESHOLD,
                    label_names=None) -> dict:
    """Metrics of predictions against targets.

    task_type "binary": scores (N,) or (N, 1), targets (N,) in {0, 1};
    "multilabel": scores (N, L), targets (N, L) in {0, 1}: acc, wacc, f1 are means over labels; ``auc`` is
    one AUROC over the N x L flattened pairs (the official MARLIN metric) and ``auc_label_mean`` the mean of
    the per-label AUCs over labels with both classes present;
    "multiclass": scores (N, C), targets (N,) class ids.
    Returns floats: acc, auc, macro_f1, plus wacc (balanced accuracy) and f1 for binary / multi-label, and
    uar (mean per-class recall over classes present in targets) and war (= acc) for multi-class.
    With `label_names` (label names for multi-label, class names for multi-class and binary, negative class
    first), "per_label" maps each name to its values.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
    scores, targets = _tensor(scores), _tensor(targets)
    if len(scores) != len(targets):
        raise ValueError(f"{len(scores)} predictions for {len(targets)} targets")
    if len(targets) == 0:
        raise ValueError("no samples to evaluate")
    out: dict = {"n": int(len(targets))}
    if task_type == "multiclass":
        if scores.ndim != 2 or targets.ndim != 1:
            raise ValueError(f"multiclass expects scores (N, C) and targets (N,), got {tuple(scores.shape)} "
                             f"and {tuple(targets.shape)}")
        probs, tgt, k = _as_probs(scores, "multiclass"), targets.long(), scores.shape[1]
        if int(tgt.min()) < 0 or int(tgt.max()) >= k:
            raise ValueError(f"class ids must be in [0, {k - 1}], got {int(tgt.min())}..{int(tgt.max())}")
        cm = C.multiclass_confusion_matrix(probs, tgt, num_classes=k).double()  # (C true, C pred)
        support = cm.sum(1)
        recall = torch.where(support > 0, cm.diag() / support.clamp(min=1), torch.nan)
        predicted = cm.sum(0)
        f1_den = support + predicted
        f1 = torch.where(f1_den > 0, 2 * cm.diag() / f1_den.clamp(min=1), torch.nan)
        out["acc"] = out["war"] = float(cm.diag().sum() / cm.sum())
        out["uar"] = _nanmean(recall.tolist())
        out["macro_f1"] = _nanmean(f1.tolist())
        present = support > 0
        if int(present.sum()) >= 2:
            aucs = [float(C.binary_auroc(probs[:, c], (tgt == c).long())) for c in range(k) if present[c]]
            out["auc"] = _nanmean(aucs)  # one-vs-rest, over classes present in targets
        else:
            out["auc"] = float("nan")
        if label_names is not None:
            if len(label_names) != k:
                raise ValueError(f"{len(label_names)} class names for {k} classes")
            out["per_label"] = {str(n): {"recall": float(r), "f1": float(f)}
                                for n, r, f in zip(label_names, recall.tolist(), f1.tolist())}
        return out
    if task_type == "binary":
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.ndim != 1 or targets.ndim != 1:
            raise ValueError(f"binary expects scores (N,) and targets (N,), got {tuple(scores.shape)} "
                             f"and {tuple(targets.shape)}")
        scores, targets = scores[:, None], targets[:, None]
    elif scores.ndim != 2 or tuple(targets.shape) != tuple(scores.shape):
        raise ValueError(f"multilabel expects scores and targets (N, L), got {tuple(scores.shape)} "
                         f"and {tuple(targets.shape)}")
    if not bool(((targets == 0) | (targets == 1)).all()):
        raise ValueError(f"{task_type} targets must be 0 or 1")
    probs = _as_probs(scores, task_type)
    cols = _binary_columns(probs, targets.long(), threshold)
    out["acc"] = _nanmean(cols["acc"])
    out["wacc"] = _nanmean(cols["wacc"])
    out["f1"] = _nanmean(cols["f1"])
    if task_type == "binary":
        out["auc"] = cols["auc"][0]
        # macro-F1 over the two classes (positive and negative).
        out["macro_f1"] = (cols["f1"][0] + cols["f1_neg"][0]) / 2
        if label_names is not None:
            out["per_label"] = _binary_classes(label_names, cols)
        return out
    out["auc"] = _flat_auc(probs, targets)
    out["auc_label_mean"] = _nanmean(cols["auc"])
    out["macro_f1"] = out["f1"]
    if label_names is not None:
        if len(label_names) != scores.shape[1]:
            raise ValueError(f"{len(label_names)} label names for {scores.shape[1]} labels")
        out["per_label"] = {str(n): {k: cols[k][j] for k in ("acc", "wacc", "f1", "auc")}
                            for j, n in enumerate(label_names)}
    return out


def _binary_classes(label_names, cols: dict) -> dict:
    """Per-class recall and F1 of a binary task, keyed by its two class names (negative class first)."""
    if len(label_names) != 2:
        raise ValueError(f"a binary task has 2 class names, got {list(label_names)}")
    tp, tn, fp, fn = (cols[k][0] for k in ("tp", "tn", "fp", "fn"))
    neg, pos = (str(n) for n in label_names)
    return {neg: {"recall": tn / (tn + fp) if tn + fp else float("nan"), "f1": cols["f1_neg"][0]},
            pos: {"recall": tp / (tp + fn) if tp + fn else float("nan"), "f1": cols["f1"][0]}}


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray, chunk: int = 64) -> np.ndarray:
    """AUROC of scores (N,) against 0/1 `positive` (N,) under each row of sample weights (R, N) (a bootstrap
    resample is its counts); ties count one half, as in torchmetrics. NaN where a row lacks a class. Rows are
    taken ``chunk`` at a time so the work stays in the cache."""
    order = np.argsort(scores, kind="stable")
    s, pos = scores[order], positive[order].astype(bool)
    new_group = np.r_[True, s[1:] != s[:-1]]
    starts, group = np.flatnonzero(new_group), np.cumsum(new_group) - 1  # groups of equal scores
    out = np.empty(len(weights))
    for r in range(0, len(weights), chunk):
        w = weights[r:r + chunk][:, order]
        w_pos, w_neg = w[:, pos], w[:, ~pos]
        neg_in = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)  # negative weight per group
        wins = np.cumsum(neg_in, axis=1) - 0.5 * neg_in                   # below the group + half of it
        n_pos, n_neg = w_pos.sum(1), w_neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (w_pos * wins[:, group[pos]]).sum(1) / (n_pos * n_neg)
        out[r:r + chunk] = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)
    return out


def resampled_metric(task_type: str, metric: str, scores, targets, weights: np.ndarray) -> np.ndarray:
    """`compute_metrics(task_type, ...)[metric]` of the samples weighted by each row of ``weights`` (R, N), e.g.
    bootstrap counts, for "acc" (multi-class), "auc" (binary), "auc_label_mean" (multi-label): (R,) values,
    vectorised over rows (a resample costs microseconds instead of the milliseconds of `compute_metrics`)."""
    s, y = np.asarray(scores, np.float64), np.asarray(targets)
    w = np.asarray(weights, np.float64)
    if (task_type, metric) == ("multiclass", "acc"):
        return w @ (s.argmax(1) == y) / w.sum(1)
    if (task_type, metric) == ("binary", "auc"):
        return _weighted_auc(s.reshape(len(s)), y.reshape(len(y)), w)
    if (task_type, metric) == ("multilabel", "auc_label_mean"):
        per_label = np.stack([_weighted_auc(s[:, j], y[:, j], w) for j in range(y.shape[1])], 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample without both classes in every label
            return np.nanmean(per_label, 1)
    raise ValueError(f"resampled_metric: no vectorised {metric!r} for {task_type} tasks "
                     "(acc for multiclass, auc for binary, auc_label_mean for multilabel)")


def paired_bootstrap(task_type: str, metric: str, base, other, targets, n: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:
    """Interval (central ``level``) of metric(other) - metric(base) over ``n`` paired bootstrap resamples of the
    samples (the same resample for both score sets; resample i draws N indices from
    ``np.random.default_rng(seed)`` in turn). Metrics as in `resampled_metric`."""
    y = np.asarray(targets)
    idx = np.random.default_rng(seed).integers(0, len(y), (n, len(y)))
    counts = np.bincount((idx + len(y) * np.arange(n)[:, None]).ravel(), minlength=n * len(y)).reshape(n, len(y))
    diffs = (resampled_metric(task_type, metric, other, y, counts)
             - resampled_metric(task_type, metric, base, y, counts))
    tail = 50 * (1 - level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN, not a warning, where no resample has both classes
        lo, hi = np.nanpercentile(diffs, [tail, 100 - tail])
    return float(lo), float(hi)
