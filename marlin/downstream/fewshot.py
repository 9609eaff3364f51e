"""Few-shot training subsets: a seeded, stratified fraction of the training labels."""
from __future__ import annotations

import numpy as np


def strata(targets, kind: str) -> np.ndarray:
    """One stratum id per sample: the class (multi-class / binary) or, for multi-label, the sample's rarest
    positive label (-1 when it has none), so that every label keeps positives in proportion."""
    y = np.asarray(targets)
    if kind != "multilabel":
        return y.astype(np.int64).reshape(-1)
    freq = y.sum(0).astype(np.float64)
    rank = np.where(y > 0, freq[None, :], np.inf)  # (N, L) frequency of each positive label
    rarest = rank.argmin(1)
    return np.where(np.isfinite(rank.min(1)), rarest, -1)


def few_shot_indices(targets, fraction: float, kind: str, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified ``fraction`` (0 < f <= 1) of the samples, at least one per stratum.

    Deterministic for a seed; a larger fraction with the same seed contains the smaller one.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"few-shot fraction must be in (0, 1], got {fraction}")
    s = strata(targets, kind)
    if fraction == 1:
        return np.arange(len(s))
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(s):
        members = np.flatnonzero(s == value)
        members = members[rng.permutation(len(members))]
        chosen.append(members[:max(1, int(round(fraction * len(members))))])
    return np.sort(np.concatenate(chosen))


def parse_fraction(value) -> float:
    """"10%", "0.1" or 0.1 -> 0.1."""
    text = str(value).strip()
    f = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 < f <= 1:
        raise ValueError(f"few-shot fraction must be in (0, 1] (or 0-100%), got {value!r}")
    return f
