"""`marlin demo`: the whole system end to end on the synthetic talking-face world, on a CPU, in minutes.

Generate (or reuse) a synthetic dataset -> pretrain a tiny MARLIN within a time budget -> extract features
with the pretrained encoder and with a randomly initialised encoder of the same size -> linear-probe every
synthetic task with both -> write a report (Markdown + JSON, loss curve, reconstructions, Fasking masks).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

# task name -> (label key in meta.json, probe task type, headline metric)
TASKS = {
    "appearance": ("appearance", "multilabel", "auc"),
    "action": ("action", "multilabel", "auc"),
    "expression": ("expression", "multiclass", "acc"),
    "manipulated": ("manipulated", "binary", "auc"),
}


@dataclass
class DemoSettings:
    out_dir: Path = Path("marlin_demo")
    num_items: int = 2000         # synthetic clips (80 / 10 / 10 % train / val / test)
    frames: int = 32              # frames per synthetic video: two 16-frame windows at demo_cpu's sample rate 1
    size: int = 64                # crop size in pixels (the config's img_size)
    seed: int = 0
    workers: int = 2
    config: str = "demo_cpu"      # pretraining config (shipped name or YAML)
    minutes: float = 9.0          # pretraining wall-clock cap
    max_steps: int | None = 8500  # iterations; also the cosine schedule's length (~9 min on 2 free bf16 cores)
    ablation: bool = False        # also pretrain with each of fasking / tube / random that is not the main strategy
    batch_size: int | None = None
    test_items: int = 3000        # probe test clips from a second world (seed + 1); 0: the world's own test split
    readout: str = "spatial"      # probe features: "spatial" (token positions kept) or "pooled" (official clip feature)
    progress: bool = True
    overrides: dict = field(default_factory=dict)  # extra TrainerSettings for pretraining


def _say(msg: str) -> None:
    print(f"[marlin demo] {msg}", flush=True)


def video_windows(frames: int, clip_frames: int, sample_rate: int = 2) -> list[list[int]]:
    """Frame indices of the windows the demo reads from one video: clips of `clip_frames` frames at the
    pretraining `sample_rate`, back to back from frame 0, with one more window ending at the last sampled frame
    when the video is not a whole number of windows, so no part of the video is left out. A video shorter than
    one window is read at rate 1, its last frame repeated. (Unlike `marlin.video.windows.clip_indices`, a video
    of exactly one window is read at the pretraining rate, not as its first `clip_frames` consecutive frames.)"""
    span = clip_frames * sample_rate
    if frames < span:
        return [[min(i, frames - 1) for i in range(clip_frames)]]
    starts = list(range(0, frames - span + 1, span))
    if starts[-1] + span < frames:
        starts.append(frames - span)
    return [list(range(s, s + span, sample_rate)) for s in starts]


READOUTS = ("spatial", "pooled")


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
def encode_items(model, items, batch_size: int = 16, progress: bool = True, desc: str = "features",
                 readout: str = "spatial", sample_rate: int = 2):
    """(N, F) probe features of each item from every window of it (`video_windows` at `sample_rate`):
    "spatial" (`video_readout`) or "pooled" ((N, D): the official clip feature, the final norm of the mean over
    tokens, averaged over windows). `batch_size` counts windows. `model` may be a dict {name: model} of encoders
    with the same clip and token grid: each video is then decoded once and {name: (N, F)} returned."""
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    from tqdm.auto import tqdm

    from .extract import clips_to_tensor

    models = model if isinstance(model, dict) else {"": model}
    cfg = next(iter(models.values())).config
    for m in models.values():
        if (m.config.n_frames, m.config.grid) != (cfg.n_frames, cfg.grid):
            raise ValueError("encode_items: every model must read the same clip length and token grid")
        m.eval()
    items = list(items)
    out = {name: [None] * len(items) for name in models}
    clips, owners = [], []  # pending windows and the index of the item each belongs to

    def flush():
        pooled = readout == "pooled"
        own = torch.tensor(owners)
        pending = sorted(set(owners))
        for name, m in models.items():
            tokens = torch.cat([m.extract_features(clips_to_tensor(clips[i:i + batch_size]), keep_seq=not pooled)
                                for i in range(0, len(clips), batch_size)])   # (W, N, D) or (W, D)
            for k in pending:
                mine = tokens[own == k]
                out[name][k] = (mine.mean(0) if pooled else video_readout(mine, cfg.grid)).numpy()
        clips.clear()
        owners.clear()

    for k, item in enumerate(tqdm(items, desc=desc, unit="clip", disable=not progress, leave=False)):
        wins = video_windows(item.num_frames, cfg.n_frames, sample_rate)
        frames = item.read_frames([f for w in wins for f in w])  # one decode per item
        clips.extend(frames.reshape(len(wins), cfg.n_frames, *frames.shape[1:]))
        owners.extend([k] * len(wins))
        if len(clips) >= batch_size:
            flush()
    if clips:
        flush()
    stacked = {name: np.stack(feats) for name, feats in out.items()}
    return stacked if isinstance(model, dict) else stacked[""]


def split_items(data_dir: Path) -> dict[str, list]:
    """{"train" / "val" / "test": items} of a synthetic world, from its split lists."""
    from .data import list_items

    by_name = {it.name: it for it in list_items(data_dir)}
    return {s: [by_name[n] for n in (Path(data_dir) / f"{s}.txt").read_text().split() if n in by_name]
            for s in ("train", "val", "test")}


# The demo's probes: name -> what the report calls it. "logistic" is the check (decided before it was measured
# on any demo features, see docs/demo.md); the other two are printed beside it.
PROBES = {
    "logistic": "L2-regularised logistic regression (L-BFGS to convergence, penalty chosen on val)",
    "sgd": "the toolkit's SGD linear probe (paper LP settings: Adam, no weight decay, early stopping on val)",
    "ridge": "closed-form ridge on +-1 targets (penalty chosen on val)",
}
CHECK = "logistic"


def probe_all(sets: dict[str, tuple[np.ndarray, list]], seed: int = 0) -> dict:
    """Linear-probe every synthetic task with each of `PROBES` on z-scored features (statistics from the
    training split). `sets` maps "train" / "val" / "test" to (features (N, F), items).

    Returns {task: {probe: {"test": metrics, ...}, "scores": {probe: test scores}, "targets": test targets}};
    "scores" and "targets" feed `bootstrap_margin` and are left out of the JSON report.
    """
    from .downstream import linear_probe, logistic_probe
    from .downstream.linear import predict

    mu = sets["train"][0].mean(0)
    sd = sets["train"][0].std(0) + 1e-6
    z = {s: (x - mu) / sd for s, (x, _) in sets.items()}
    results = {}
    for task, (key, kind, metric) in TASKS.items():
        y = {s: np.array([it.labels[key] for it in items]) for s, (_, items) in sets.items()}
        data = (z["train"], y["train"], z["val"], y["val"], z["test"], y["test"])
        logistic = logistic_probe(*data, task_type=kind, return_model=True)
        sgd = linear_probe(*data, task_type=kind, seed=seed, return_model=True)
        scores = {name: predict(r.pop("model"), z["test"]).numpy() for name, r in (("logistic", logistic),
                                                                                   ("sgd", sgd))}
        scores["ridge"] = ridge_probe(*[(z[s], y[s]) for s in ("train", "val", "test")], kind, metric)
        scores = {k: v[:, 0] if kind == "binary" else v for k, v in scores.items()}
        results[task] = {
            "logistic": {k: logistic[k] for k in ("test", "val", "penalty", "val_by_penalty")},
            "sgd": {k: sgd[k] for k in ("test", "val", "best_epoch")},
            "ridge": {"test": {metric: metric_value(kind, metric, scores["ridge"], y["test"])}},
            "scores": scores, "targets": y["test"]}
    return results


RIDGE_PENALTIES = (0.1, 1, 10, 100, 1e3, 1e4, 1e5)


def ridge_probe(train, val, test, kind: str, metric: str) -> np.ndarray:
    """Closed-form ridge probe on +-1 targets (one-vs-rest for multiclass) over z-scored features: fit on train
    (X, y) for each of `RIDGE_PENALTIES`, keep the one whose val `metric` is best, return the test scores
    (N_test, K). Deterministic, closed form; printed beside the check's logistic probe."""
    (xa, ya), (xv, yv), (xt, _) = train, val, test
    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    xa, xv, xt = [np.c_[(x - mu) / sd, np.ones(len(x))] for x in (xa, xv, xt)]
    if kind == "multiclass":
        targets = np.eye(int(max(ya.max(), yv.max())) + 1)[ya]
    else:
        targets = ya.reshape(len(ya), -1)
    targets = targets * 2.0 - 1
    gram = xa @ xa.T  # dual form: features may outnumber clips
    best = None
    for lam in RIDGE_PENALTIES:
        w = xa.T @ np.linalg.solve(gram + lam * np.eye(len(xa)), targets)
        scores = xv @ w
        s = metric_value(kind, metric, scores if kind != "binary" else scores[:, 0], yv)
        if best is None or s > best[0]:
            best = (s, w)
    return xt @ best[1]


def metric_value(kind: str, metric: str, scores: np.ndarray, y: np.ndarray) -> float:
    """Accuracy (multiclass) or AUC (mean over labels with both classes present), in numpy for resampling."""
    if metric == "acc":
        return float((scores.argmax(1) == y).mean())
    s, t = (scores[:, None], y[:, None]) if scores.ndim == 1 else (scores, y)
    aucs = []
    for j in range(t.shape[1]):
        pos = t[:, j] == 1
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if n1 and n0:
            ranks = np.empty(len(s))
            ranks[np.argsort(s[:, j], kind="stable")] = np.arange(1, len(s) + 1)
            aucs.append((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
    return float(np.mean(aucs)) if aucs else float("nan")


def bootstrap_margin(task: str, base: dict, other: dict, n: int = 1000, seed: int = 0,
                     probe: str = CHECK) -> tuple[float, float]:
    """95 % interval of metric(other) - metric(base) on the test split by a paired bootstrap over test clips,
    for the test scores of `probe` (entries of `probe_all`'s results: {"scores": {probe: ...}, "targets": ...})."""
    _, kind, metric = TASKS[task]
    y = base["targets"]
    a, b = base["scores"][probe], other["scores"][probe]
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(y), len(y))
        diffs.append(metric_value(kind, metric, b[i], y[i]) - metric_value(kind, metric, a[i], y[i]))
    lo, hi = np.nanpercentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def compare(pre: dict, rnd: dict, probe: str, seed: int = 0) -> dict:
    """Pretrained − random margins of one probe on every task, their paired-bootstrap intervals and the verdict."""
    margins = {t: pre[t][probe]["test"][m] - rnd[t][probe]["test"][m] for t, (_, _, m) in TASKS.items()}
    intervals = {t: bootstrap_margin(t, rnd[t], pre[t], seed=seed, probe=probe) for t in TASKS}
    return {"margin_pretrained_minus_random": margins, "margin_95ci_paired_bootstrap": intervals,
            "pretrained_higher_on_every_task": all(v > 0 for v in margins.values()),
            "pretrained_beats_random_on_every_task": all(lo > 0 for lo, _ in intervals.values())}


def plot_losses(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in history if r.get("kind") == "train" and "rec_loss" in r]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    it = [r["iteration"] for r in rows]
    ax[0].plot(it, [r["rec_loss"] for r in rows], lw=1)
    ax[0].set(title="reconstruction loss (masked tubelets)", xlabel="iteration", ylabel="MSE", yscale="log")
    if any("d_loss" in r for r in rows):
        ax[1].plot(it, [r.get("d_loss", np.nan) for r in rows], lw=1, label="critic loss")
        ax[1].plot(it, [r.get("adv_loss", np.nan) for r in rows], lw=1, label="adversarial loss (weighted)")
        ax[1].legend()
    ax[1].set(title="adversarial terms", xlabel="iteration")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pretrain(s: DemoSettings, cfg, data_dir: Path, out: Path):
    from .train import pretrain

    overrides = dict(s.overrides)
    if s.batch_size:
        overrides["batch_size"] = s.batch_size
    return pretrain(cfg, data_dir, out, max_minutes=s.minutes, max_steps=s.max_steps, progress=s.progress,
                    tensorboard=False, seed=s.seed, **overrides)


def _random_twin(result, seed: int):
    """A randomly initialised encoder of the same configuration, built as pretraining starts it."""
    from .models import Marlin

    torch.manual_seed(seed)
    return Marlin(result.config.model, full_model=False)


def _table(rows: list[tuple[str, dict]]) -> list[str]:
    """Test metric of every task under every probe (the check first), one column per encoder."""
    names = (n if n == "random init" else f"pretrained ({n} masking)" for n, _ in rows)
    head = "| task | metric | probe | " + " | ".join(names) + " |"
    lines = [head, "|" + "---|" * (3 + len(rows))]
    for task, (_, _, metric) in TASKS.items():
        for probe in PROBES:
            vals = " | ".join(f"{r[task][probe]['test'][metric]:.3f}" for _, r in rows)
            label = f"**{probe}** (check)" if probe == CHECK else probe
            lines.append(f"| {task} | test {metric} | {label} | {vals} |")
    return lines


def run_demo(s: DemoSettings) -> dict:
    """Run the demo; returns the report dict (also written to OUT/report.json and OUT/report.md)."""
    from .data import load_item
    from .models import Marlin
    from .synth import generate_dataset

    t0 = time.perf_counter()
    out = Path(s.out_dir)
    data_dir = out / "data"
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)

    _say(f"1/4 synthetic world: {s.num_items} clips of {s.frames} frames at {s.size}px -> {data_dir}")
    generate_dataset(data_dir, s.num_items, frames=s.frames, size=s.size, seed=s.seed, workers=s.workers,
                     progress=s.progress)
    splits = split_items(data_dir)
    if s.test_items:  # a second world (another seed): more test clips, and identities pretraining never saw
        test_dir = out / "data_test"
        _say(f"    test world: {s.test_items} clips, seed {s.seed + 1} -> {test_dir}")
        made = generate_dataset(test_dir, s.test_items, frames=s.frames, size=s.size, seed=s.seed + 1,
                                workers=s.workers, progress=s.progress)
        splits["test"] = [load_item(d) for d in made]  # items 0..test_items-1, even in a larger reused world

    from .train import pretrain_config

    cfg = pretrain_config(s.config)
    strategy = cfg.mask_strategy
    _say(f"2/4 pretraining {s.config} ({strategy} masking) for at most {s.minutes:g} min")
    train_list = data_dir / "train.txt"  # pretrain on the training split only: test clips stay unseen
    runs = {strategy: _pretrain(s, cfg, train_list, out / "pretrain")}
    if s.ablation:
        for other in ("fasking", "tube", "random"):
            if other != strategy:
                _say(f"    ablation: pretraining with {other} masking at the same budget")
                runs[other] = _pretrain(s, dataclasses.replace(cfg, mask_strategy=other), train_list,
                                        out / f"pretrain_{other}")
    main = runs[strategy]
    _say(f"    {main.iterations} iterations in {main.seconds / 60:.1f} min (stopped by {main.stopped_by})")

    _say("3/4 features + linear probes: pretrained vs random encoder of the same size")
    encoders = {name: Marlin.from_file(None, r.exports["safetensors"], full_model=False) for name, r in runs.items()}
    encoders = {"random init": _random_twin(main, s.seed), **encoders}
    feats = {k: encode_items(encoders, its, progress=s.progress, desc=f"features ({k}, {len(encoders)} encoders)",
                             readout=s.readout, sample_rate=main.config.sample_rate)
             for k, its in splits.items()}  # each video decoded once for all encoders
    results = {name: probe_all({k: (feats[k][name], its) for k, its in splits.items()}, seed=s.seed)
               for name in encoders}

    _say("4/4 report")
    pictures = {"loss_curve": plot_losses(main.history, report_dir / "loss_curve.png")}
    if main.reconstructions:
        pictures["reconstruction"] = Path(shutil.copy(main.reconstructions[-1], report_dir / "reconstruction.png"))
    if main.mask_picture:
        pictures["fasking_masks"] = Path(shutil.copy(main.mask_picture, report_dir / "fasking_masks.png"))

    pre, rnd = results[strategy], results["random init"]
    comparisons = {probe: compare(pre, rnd, probe, seed=s.seed) for probe in PROBES}
    check = comparisons[CHECK]
    results = {n: {t: {k: v for k, v in r.items() if k not in ("scores", "targets")} for t, r in res.items()}
               for n, res in results.items()}
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "pretraining": {"iterations": main.iterations, "minutes": main.seconds / 60, "stopped_by": main.stopped_by,
                        "precision": main.precision,
                        "final_rec_loss": next((r["rec_loss"] for r in reversed(main.history)
                                                if r.get("kind") == "train" and "rec_loss" in r), None),
                        "exports": {k: str(v) for k, v in main.exports.items()}},
        "results": results, "check_probe": CHECK, **check,
        "probes": {probe: {"description": PROBES[probe], **c} for probe, c in comparisons.items()},
        "pictures": {k: str(v) for k, v in pictures.items()},
        "seconds_total": time.perf_counter() - t0,
    }
    (report_dir / "report.json").write_text(json.dumps(report, indent=1, default=float))
    names = ["random init", *runs]

    def margin_text(c: dict) -> str:
        return ", ".join(f"{t} {c['margin_pretrained_minus_random'][t]:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                         for t, (lo, hi) in c["margin_95ci_paired_bootstrap"].items())

    clear = check["pretrained_beats_random_on_every_task"]
    verdict = "yes" if clear else "NO"
    others = [f"- {probe} ({PROBES[probe]}): {margin_text(c)}; clear on every task: "
              f"{'yes' if c['pretrained_beats_random_on_every_task'] else 'no'}."
              for probe, c in comparisons.items() if probe != CHECK]
    test_where = (f"a separate world made with seed {s.seed + 1}" if s.test_items else "its test split")
    readout = {"spatial": "the mean and standard deviation over time of every spatial token position (z-scored)",
               "pooled": "the pooled clip feature (official `extract_features`, z-scored)"}[s.readout]
    lines = [
        "# MARLIN demo report", "",
        f"Synthetic world: {s.num_items} clips, {s.frames} frames at {s.size} px, seed {s.seed}; probes fitted on "
        f"its train split ({len(splits['train'])} clips), selected on its val split ({len(splits['val'])}) and "
        f"scored on {test_where} ({len(splits['test'])} clips).",
        f"Pretraining: config `{s.config}` ({strategy} masking, precision {main.precision}), {main.iterations} "
        f"iterations in {main.seconds / 60:.1f} min (stopped by {main.stopped_by}); final reconstruction loss "
        f"{report['pretraining']['final_rec_loss']}.",
        f"Linear probes on {readout}, over every {main.config.model.n_frames}-frame window of each video at the "
        f"pretraining sample rate ({main.config.sample_rate}); metrics on the test clips.", "",
        *_table([(n, results[n]) for n in names]), "",
        f"The check's probe: {CHECK} ({PROBES[CHECK]}). Margin pretrained − random [95 % paired-bootstrap "
        "interval over test clips]: " + margin_text(check) + ".",
        f"Pretrained beats random by a clear margin (interval above 0) on every task: **{verdict}**.", "",
        "The same margins under the other probes, on the same features:", "", *others, "",
        "![loss curve](loss_curve.png)", "",
    ]
    if "reconstruction" in pictures:
        lines += ["Reconstruction (original | masked | reconstruction):", "",
                  "![reconstruction](reconstruction.png)", ""]
    if "fasking_masks" in pictures:
        lines += ["Masks per strategy:", "", "![masks](fasking_masks.png)", ""]
    (report_dir / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(_table([(n, results[n]) for n in names])))
    _say(f"pretrained beats random by a clear margin on every task ({CHECK} probe): {verdict} "
         f"(margin [95 % interval]: {margin_text(check)})")
    for probe, c in comparisons.items():
        if probe != CHECK:
            _say(f"{probe} probe, for comparison: {margin_text(c)}")
    _say(f"done in {report['seconds_total'] / 60:.1f} min. Report: {report_dir / 'report.md'}")
    return report
