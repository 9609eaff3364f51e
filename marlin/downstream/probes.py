"""Linear probes over video features, the building blocks `marlin demo` and `marlin ablate` compose: features of
every video under one or several encoders (`encode_videos`: windows through `marlin.extract.encode_clips`, then a
spatial or pooled readout), and the probes of a task on them (`probe_task`, `probe_all`: the logistic and SGD
probes of `marlin.downstream.linear`, and a closed-form ridge probe, `ridge_probe`).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

# The metric a task is judged by (the probes' selection, the demo's check and the reports), by task kind: accuracy
# for single-label classes, the mean of the per-label AUCs for multi-label tasks, AUC for binary ones.
METRIC = {"multiclass": "acc", "multilabel": "auc_label_mean", "binary": "auc"}
READOUTS = ("spatial", "pooled")


def windows(total: int, clip_frames: int, sample_rate: int) -> list[list[int]]:
    """Frame indices of the windows the demo reads from a video: the shared rule of `marlin.video.windows`
    with windows back to back (stride = one window) and the tail covered, so every sampled frame is read."""
    from ..video.windows import clip_indices

    return clip_indices(total, clip_frames, sample_rate, stride=clip_frames, cover_tail=True)


def spatial_readout(tokens, grid: tuple[int, int, int]):
    """Normed tokens (B, N, D) of one clip -> (B, 2 * H' * W' * D): the mean and the standard deviation over time
    of every spatial token position, so a linear probe sees where on the face a feature is and how much it moves."""
    t, h, w = grid
    x = tokens.reshape(len(tokens), t, h * w, -1)                # (B, T', H'W', D)
    return torch.cat([x.mean(1).flatten(1), x.std(1).flatten(1)], 1)


def video_readout(window_tokens, grid: tuple[int, int, int]):
    """Normed tokens (W, N, D) of the W windows of one video -> (2 * H' * W' * D,): `spatial_readout` over the
    time slots of all windows together, so the feature has the same size for any video length."""
    t, h, w = grid
    return spatial_readout(window_tokens.reshape(1, -1, window_tokens.shape[-1]), (len(window_tokens) * t, h, w))[0]


@torch.no_grad()
def encode_videos(models: dict, videos: list, sample_rate: int, readout: str = "spatial", batch_size: int = 64,
                  precision: str = "32", progress: bool = True, desc: str = "features",
                  chunk: int = 32) -> dict[str, np.ndarray]:
    """{name: (N, F) probe features} of the N video files for every encoder of `models` (same clip and token
    grid), each video decoded once for all of them: its `windows` at `sample_rate` (`marlin.extract.video_clips`;
    the next `chunk` of videos decodes in a thread while this one encodes) run through
    `marlin.extract.encode_clips` in batches of `batch_size` windows, then `video_readout` over all
    its windows ("spatial") or the official clip feature averaged over them ("pooled": (N, D)). `precision`
    ("32", "bf16", "auto": `Marlin.extract_features`) "bf16" runs the encoders under bf16 autocast (features
    within cosine 0.9999 of float32; the stage ~20 % faster on a 2-core AVX512-BF16 host, docs/demo.md)."""
    from tqdm.auto import tqdm

    from ..extract import encode_clips, video_clips

    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    cfg = next(iter(models.values())).config
    for m in models.values():
        if (m.config.n_frames, m.config.grid, m.config.img_size) != (cfg.n_frames, cfg.grid, cfg.img_size):
            raise ValueError("encode_videos: every model must read the same clip length, size and token grid")
        m.eval()
    pooled = readout == "pooled"

    def encode(x):
        return torch.stack([m.extract_features(x, keep_seq=not pooled, precision=precision).float()
                            for m in models.values()], 1)

    def read(part: list) -> tuple[list, list]:
        """The windows of a chunk of videos and the index (in the chunk) of the video each belongs to."""
        clips, owners = [], []
        for k, path in enumerate(part):
            for clip in video_clips(path, cfg.n_frames, sample_rate, stride=cfg.n_frames, cover_tail=True,
                                    size=cfg.img_size):
                clips.append(clip)
                owners.append(k)
        return clips, owners

    out = {name: [] for name in models}
    parts = [videos[i:i + chunk] for i in range(0, len(videos), chunk)]  # a chunk at a time bounds the memory
    bar = tqdm(total=len(videos), desc=desc, unit="clip", disable=not progress, leave=False)
    with ThreadPoolExecutor(1) as pool:  # the next chunk decodes (PyAV, without the GIL) while this one encodes
        pending = pool.submit(read, parts[0]) if parts else None
        for i, part in enumerate(parts):
            clips, owners = pending.result()
            if i + 1 < len(parts):
                pending = pool.submit(read, parts[i + 1])
            tokens = encode_clips(encode, clips, batch_size)  # (W, M, N, D) or (W, M, D)
            own = torch.tensor(owners)
            for k in range(len(part)):
                mine = tokens[own == k]
                for j, name in enumerate(models):
                    out[name].append((mine[:, j].mean(0) if pooled else video_readout(mine[:, j], cfg.grid)).numpy())
            bar.update(len(part))
    bar.close()
    return {name: np.stack(feats) for name, feats in out.items()}


# The probes: name -> what a report calls it (`marlin demo` checks with "logistic" and prints the other two).
PROBES = {
    "logistic": "L2-regularised logistic regression (L-BFGS to convergence, penalty chosen on val)",
    "sgd": "the toolkit's SGD linear probe (paper LP settings: Adam, no weight decay, early stopping on val)",
    "ridge": "closed-form ridge on +-1 targets (penalty chosen on val)",
}


def probe_task(task, x: dict, y: dict, seed: int = 0, probes=tuple(PROBES)) -> dict:
    """The `probes` (default: every one of `PROBES`) on one task (a `marlin.downstream` Task) with features
    x[split] (N, F) and targets y[split]: {probe: {"test": metrics, "val": ...}, "scores": {probe: test scores},
    "targets": test targets}."""
    from .linear import LP_DEFAULTS, predict, train_linear, train_logistic
    from .metrics import compute_metrics
    from .train import TrainConfig

    out, scores = {}, {}
    if "logistic" in probes:
        head, penalty, val, by_penalty = train_logistic(task, x["train"], y["train"], x["val"], y["val"])
        scores["logistic"] = task.scores(predict(head, x["test"])).numpy()
        out["logistic"] = {"val": val, "penalty": penalty, "val_by_penalty": by_penalty}
    if "sgd" in probes:
        sgd, fitted = train_linear(task, x["train"], y["train"], x["val"], y["val"],
                                   TrainConfig(**{**LP_DEFAULTS, "seed": seed}))
        scores["sgd"] = task.scores(predict(sgd, x["test"])).numpy()
        out["sgd"] = {"val": fitted.val_metrics, "best_epoch": fitted.best_epoch}
    if "ridge" in probes:
        scores["ridge"] = ridge_probe(task, *[(x[s], y[s]) for s in ("train", "val", "test")])
        out["ridge"] = {}
    for name, s in scores.items():
        out[name] = {"test": compute_metrics(task.kind, s, y["test"]), **out[name]}
    return {**out, "scores": scores, "targets": y["test"]}


def probe_all(datasets: dict, feats: dict, seed: int = 0, probes=tuple(PROBES)) -> dict:
    """Probe every task of `datasets` ({task: Dataset}) on z-scored features (statistics of the training split);
    `feats` maps each split to {video path: feature}. Returns {task: `probe_task` result}."""
    x = {s: np.stack([feats[str(smp.source)] for smp in samples])
         for s, samples in next(iter(datasets.values())).splits.items()}
    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    z = {s: (v - mu) / sd for s, v in x.items()}
    return {name: probe_task(ds.task, z, {s: ds.targets(s) for s in z}, seed, probes)
            for name, ds in datasets.items()}


RIDGE_PENALTIES = (0.1, 1, 10, 100, 1e3, 1e4, 1e5)


def ridge_probe(task, train, val, test) -> np.ndarray:
    """Closed-form ridge probe on +-1 targets (one-vs-rest for multiclass) over z-scored features and a bias
    (penalised like the weights): fit on train (X, y) for each of `RIDGE_PENALTIES`, keep the one whose val metric
    (`task.metric`) is best, return the test scores in `compute_metrics`' layout. Deterministic, closed form, in
    the dual (features may outnumber clips); printed beside the check's logistic probe."""
    from .metrics import compute_metrics

    (xa, ya), (xv, yv), (xt, _) = train, val, test
    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    xa, xv, xt = [((x - mu) / sd).astype(np.float64) for x in (xa, xv, xt)]
    targets = np.eye(len(task.labels))[ya] if task.kind == "multiclass" else ya.reshape(len(ya), -1)
    targets = targets * 2.0 - 1
    gram = xa @ xa.T + 1.0  # of [X, 1]: (N, N)
    best = None
    for lam in RIDGE_PENALTIES:
        alpha = np.linalg.solve(gram + lam * np.eye(len(xa)), targets)  # (N, C): weights X^T alpha, bias sum(alpha)
        w, b = xa.T @ alpha, alpha.sum(0)
        s = compute_metrics(task.kind, task.scores(torch.as_tensor(xv @ w + b)), yv)[task.metric]
        if best is None or s > best[0]:
            best = (s, w, b)
    return task.scores(torch.as_tensor(xt @ best[1] + best[2])).numpy()
