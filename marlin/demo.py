"""`marlin demo`: the whole system end to end on the synthetic talking-face world, on a CPU, in minutes.

A thin composition of the public APIs: `marlin.synth.generate_dataset` (a world to train and probe on, and a
second world to score on) -> `marlin.train.pretrain` (a tiny MARLIN within a time budget) -> the `items` dataset
adapter (`marlin.downstream.datasets.items.load_items`, the labels of the items' meta.json) -> features of every
video with the pretrained encoder and a random one of the same size (`marlin.extract.video_clips` windows through
`marlin.extract.encode_clips`) -> the downstream probes (`train_logistic`, `train_linear`) and metrics
(`compute_metrics`, `paired_bootstrap`) -> a report (Markdown + JSON, loss curve, reconstructions, masks).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import setting as _help  # a section field with its help text


@dataclass
class DemoSettings:
    """Settings of `marlin demo` (a section of the config layer: `marlin demo --help` lists them as flags)."""

    out_dir: Path = _help("output directory (data, runs, report)", Path("marlin_demo"))
    num_items: int = _help("synthetic clips (80 / 10 / 10 % train / val / test)", 2000)
    frames: int = _help("frames per synthetic video: two 16-frame windows at demo_cpu's sample rate 1", 32)
    size: int = _help("crop size in pixels (must match the config's img_size)", 64)
    seed: int = _help("seed of the world (the test world is seed + 1), pretraining and probes", 0)
    workers: int = _help("processes generating the synthetic world", 2)
    config: str = _help("pretraining config (shipped name or YAML)", "demo_cpu")
    max_steps: int | None = _help("pretraining iterations, also the cosine schedule's length: the budget, so a run "
                                  "computes the same encoder however loaded the machine (5-9 min on 2 cores, "
                                  "docs/demo.md)", 8500)
    minutes: float | None = _help("pretraining wall-clock cap on top of max_steps (a safety bound; a run it stops "
                                  "early reports fewer iterations)", 60.0)
    ablation: bool = _help("also pretrain with each of fasking / tube / random that is not the main strategy", False)
    batch_size: int | None = _help("pretraining clips per batch (default: the config's)")
    test_items: int = _help("probe test clips from a second world (seed + 1; its items 0..N-1, so a larger world is "
                            "reused); 0: the first world's test split", 3000)
    readout: str = _help("probe features: 'spatial' (token positions kept) or 'pooled' (official clip feature)",
                         "spatial")
    precision: str = _help("feature extraction precision (marlin.precision): 32, bf16 or auto (bf16: the stage ~20 % "
                           "faster on an AVX512-BF16 host, but it moves the expression margin; docs/demo.md)", "32")
    feature_batch: int = _help("windows per encoder call in feature extraction", 64)
    progress: bool = _help("progress bars", True)
    overrides: dict = _help("extra TrainerSettings for pretraining", factory=dict)

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


def _say(msg: str) -> None:
    print(f"[marlin demo] {msg}", flush=True)


# The metric each synthetic task is judged by (the check's and the report's), by task kind: accuracy for the
# 7 expressions, the mean of the per-label AUCs for the multi-label tasks, AUC for manipulation.
METRIC = {"multiclass": "acc", "multilabel": "auc_label_mean", "binary": "auc"}
READOUTS = ("spatial", "pooled")
PRECISIONS = ("32", "bf16", "auto")  # extraction precisions the demo offers (marlin.precision; "16" is GPU-only)


def task_metric(task: str) -> str:
    """The metric key (of `compute_metrics`) that judges a synthetic task."""
    from .synth import TASKS

    return METRIC[TASKS[task][0]]


def windows(total: int, clip_frames: int, sample_rate: int) -> list[list[int]]:
    """Frame indices of the windows the demo reads from a video: the shared rule of `marlin.video.windows`
    with windows back to back (stride = one window) and the tail covered, so every sampled frame is read."""
    from .video.windows import clip_indices

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

    from .extract import encode_clips, video_clips

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


def task_datasets(data_dir, test_dir=None, test_items: int = 0) -> dict:
    """{task: `marlin.downstream` Dataset} of every synthetic task, read by the `items` adapter from the items'
    meta.json and the world's split lists; with `test_dir`, the test split is items 0..test_items-1 of that
    world instead (all of its splits). Each task is judged by `task_metric` (its validation monitor too)."""
    from .downstream.datasets.items import load_items
    from .synth import TASKS, item_id

    keep = {item_id(k) for k in range(test_items)}
    out = {}
    for task, (kind, names) in TASKS.items():
        labels = names if kind == "multilabel" else tuple(str(i) for i in range(len(names))) \
            if kind == "multiclass" else None  # class ids as in meta.json, every class even if a world lacks one
        ds = load_items(data_dir, task, kind, labels)
        ds.task = dataclasses.replace(ds.task, monitor=METRIC[kind])
        if test_dir is not None:
            other = load_items(test_dir, task, kind, labels)
            ds.splits["test"] = sorted((s for split in other.splits.values() for s in split
                                        if Path(s.key).parts[0] in keep), key=lambda s: s.key)
        out[task] = ds
    return out


# The demo's probes: name -> what the report calls it. "logistic" is the check (decided before it was measured
# on any demo features, see docs/demo.md); the other two are printed beside it.
PROBES = {
    "logistic": "L2-regularised logistic regression (L-BFGS to convergence, penalty chosen on val)",
    "sgd": "the toolkit's SGD linear probe (paper LP settings: Adam, no weight decay, early stopping on val)",
    "ridge": "closed-form ridge on +-1 targets (penalty chosen on val)",
}
CHECK = "logistic"


def probe_task(task, x: dict, y: dict, seed: int = 0, probes=tuple(PROBES)) -> dict:
    """The `probes` (default: every one of `PROBES`) on one task (a `marlin.downstream` Task) with features
    x[split] (N, F) and targets y[split]: {probe: {"test": metrics, "val": ...}, "scores": {probe: test scores},
    "targets": test targets}."""
    from .downstream.linear import LP_DEFAULTS, predict, train_linear, train_logistic
    from .downstream.metrics import compute_metrics
    from .downstream.train import TrainConfig

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
    from .downstream.metrics import compute_metrics

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


def compare(pre: dict, rnd: dict, probe: str, seed: int = 0) -> dict:
    """Pretrained − random margins of one probe on every task, their 95 % paired-bootstrap intervals over the
    test clips (`marlin.downstream.metrics.paired_bootstrap`, 1000 resamples) and the verdict."""
    from .downstream.metrics import paired_bootstrap
    from .synth import TASKS

    margins = {t: pre[t][probe]["test"][task_metric(t)] - rnd[t][probe]["test"][task_metric(t)] for t in pre}
    intervals = {t: paired_bootstrap(TASKS[t][0], task_metric(t), rnd[t]["scores"][probe], pre[t]["scores"][probe],
                                     pre[t]["targets"], seed=seed) for t in pre}
    return {"margin_pretrained_minus_random": margins, "margin_95ci_paired_bootstrap": intervals,
            "pretrained_higher_on_every_task": all(v > 0 for v in margins.values()),
            "pretrained_beats_random_on_every_task": all(lo > 0 for lo, _ in intervals.values())}


def plot_losses(history: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
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
    lines = ["| task | metric | probe | " + " | ".join(names) + " |", "|" + "---|" * (3 + len(rows))]
    for task in rows[0][1]:
        metric = task_metric(task)
        for probe in PROBES:
            vals = " | ".join(f"{r[task][probe]['test'][metric]:.3f}" for _, r in rows)
            label = f"**{probe}** (check)" if probe == CHECK else probe
            lines.append(f"| {task} | test {metric} | {label} | {vals} |")
    return lines


def _margin_text(c: dict) -> str:
    return ", ".join(f"{t} {c['margin_pretrained_minus_random'][t]:+.3f} [{lo:+.3f}, {hi:+.3f}]"
                     for t, (lo, hi) in c["margin_95ci_paired_bootstrap"].items())


def _markdown(s: DemoSettings, report: dict, datasets: dict, main, names: list[str]) -> list[str]:
    results, check, pictures = report["results"], report["probes"][CHECK], report["pictures"]
    splits = next(iter(datasets.values())).splits
    test_where = f"a separate world made with seed {s.seed + 1}" if s.test_items else "its test split"
    readout = {"spatial": "the mean and standard deviation over time of every spatial token position (z-scored)",
               "pooled": "the pooled clip feature (official `extract_features`, z-scored)"}[s.readout]
    verdict = "yes" if report["pretrained_beats_random_on_every_task"] else "NO"
    others = [f"- {probe} ({PROBES[probe]}): {_margin_text(c)}; clear on every task: "
              f"{'yes' if c['pretrained_beats_random_on_every_task'] else 'no'}."
              for probe, c in report["probes"].items() if probe != CHECK]
    lines = [
        "# MARLIN demo report", "",
        f"Synthetic world: {s.num_items} clips, {s.frames} frames at {s.size} px, seed {s.seed}; probes fitted on "
        f"its train split ({len(splits['train'])} clips), selected on its val split ({len(splits['val'])}) and "
        f"scored on {test_where} ({len(splits['test'])} clips).",
        f"Pretraining: config `{s.config}` ({main.config.mask_strategy} masking, precision {main.precision}), "
        f"{main.iterations} iterations in {main.seconds / 60:.1f} min (stopped by {main.stopped_by}); final "
        f"reconstruction loss {report['pretraining']['final_rec_loss']}.",
        f"Linear probes on {readout}, over every {main.config.model.n_frames}-frame window of each video at the "
        f"pretraining sample rate ({main.config.sample_rate}), encoders run in {report['feature_precision']}; "
        "metrics on the test clips.", "",
        *_table([(n, results[n]) for n in names]), "",
        f"The check's probe: {CHECK} ({PROBES[CHECK]}). Margin pretrained − random [95 % paired-bootstrap "
        "interval over test clips]: " + _margin_text(check) + ".",
        f"Pretrained beats random by a clear margin (interval above 0) on every task: **{verdict}**.", "",
        "The same margins under the other probes, on the same features:", "", *others, "",
        "Wall time per stage (minutes): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in report["stage_seconds"].items())
        + ".", "", "![loss curve](loss_curve.png)", "",
    ]
    if "reconstruction" in pictures:
        lines += ["Reconstruction (original | masked | reconstruction):", "", "![reconstruction](reconstruction.png)", ""]
    if "fasking_masks" in pictures:
        lines += ["Masks per strategy:", "", "![masks](fasking_masks.png)", ""]
    return lines


def synthetic_worlds(out: Path, num_items: int, test_items: int, frames: int, size: int, seed: int = 0,
                     workers: int = 1, progress: bool = True, say=_say) -> tuple[Path, Path | None]:
    """The demo's two synthetic worlds under `out` (generated or resumed, `marlin.synth.generate_dataset`): OUT/data,
    `num_items` clips of world `seed` (pretraining and the probes' train / val splits), and OUT/data_test,
    `test_items` clips of world `seed + 1` to score on (None when `test_items` is 0). Returns both folders."""
    from .synth import generate_dataset

    data_dir, test_dir = out / "data", (out / "data_test" if test_items else None)
    say(f"1/4 synthetic world: {num_items} clips of {frames} frames at {size}px -> {data_dir}")
    generate_dataset(data_dir, num_items, frames=frames, size=size, seed=seed, workers=workers, progress=progress)
    if test_dir is not None:  # a second world (another seed): more test clips, and identities pretraining never saw
        say(f"    test world: {test_items} clips, seed {seed + 1} -> {test_dir}")
        generate_dataset(test_dir, test_items, frames=frames, size=size, seed=seed + 1, workers=workers,
                         progress=progress)
    return data_dir, test_dir


def run_demo(s: DemoSettings) -> dict:
    """Run the demo; returns the report dict (also written to OUT/report/report.json and report.md)."""
    from .atomic import write_json, write_text
    from .models import Marlin
    from .train import pretrain_config

    t0 = time.perf_counter()
    stage, clock = {}, [t0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        stage[name] = now - clock[0]
        clock[0] = now

    # everything is checked before the first expensive step (the worlds): config, trainer settings, crop size
    cfg = pretrain_config(s.config)
    pretrain_config(cfg, max_minutes=s.minutes, max_steps=s.max_steps, seed=s.seed,
                    **dict(s.overrides, **({"batch_size": s.batch_size} if s.batch_size else {})))
    if s.size != cfg.model.img_size:
        raise ValueError(f"{s.config}: the demo's crop size {s.size} px must match the config's img_size "
                         f"{cfg.model.img_size} (--size)")
    out = Path(s.out_dir)
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)

    data_dir, test_dir = synthetic_worlds(out, s.num_items, s.test_items, s.frames, s.size, s.seed, s.workers,
                                          s.progress, _say)
    lap("synthetic worlds")

    strategy = cfg.mask_strategy
    cap = f", at most {s.minutes:g} min" if s.minutes else ""
    _say(f"2/4 pretraining {s.config} ({strategy} masking) for {s.max_steps or 'unbounded'} iterations{cap}")
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
    lap("pretraining")

    from .precision import resolve_extract_precision

    precision = resolve_extract_precision(s.precision, "cpu")  # recorded resolved ("auto" differs per machine)
    _say(f"3/4 features ({precision}) + linear probes: pretrained vs random encoder of the same size")
    datasets = task_datasets(data_dir, test_dir, s.test_items)
    encoders = {name: Marlin.from_file(None, r.exports["safetensors"], full_model=False) for name, r in runs.items()}
    encoders = {"random init": _random_twin(main, s.seed), **encoders}
    videos = [str(smp.source) for samples in next(iter(datasets.values())).splits.values() for smp in samples]
    feats = encode_videos(encoders, videos, main.config.sample_rate, s.readout, s.feature_batch, precision,
                          progress=s.progress, desc=f"features ({len(encoders)} encoders)")
    lap("features")
    results = {name: probe_all(datasets, dict(zip(videos, f)), seed=s.seed) for name, f in feats.items()}
    comparisons = {probe: compare(results[strategy], results["random init"], probe, seed=s.seed) for probe in PROBES}
    lap("probes")

    _say("4/4 report")
    pictures = {"loss_curve": plot_losses(main.history, report_dir / "loss_curve.png")}
    if main.reconstructions:
        pictures["reconstruction"] = Path(shutil.copy(main.reconstructions[-1], report_dir / "reconstruction.png"))
    if main.mask_picture:
        pictures["fasking_masks"] = Path(shutil.copy(main.mask_picture, report_dir / "fasking_masks.png"))
    results = {n: {t: {p: r[p] for p in PROBES} for t, r in res.items()} for n, res in results.items()}
    lap("report")
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
        "pretraining": {"iterations": main.iterations, "minutes": main.seconds / 60, "stopped_by": main.stopped_by,
                        "precision": main.precision,
                        "final_rec_loss": next((r["rec_loss"] for r in reversed(main.history)
                                                if r.get("kind") == "train" and "rec_loss" in r), None),
                        "exports": {k: str(v) for k, v in main.exports.items()}},
        "feature_precision": precision,
        "splits": {k: len(v) for k, v in next(iter(datasets.values())).splits.items()},
        "metrics": {t: task_metric(t) for t in datasets},
        "results": results, "check_probe": CHECK, **comparisons[CHECK],
        "probes": {probe: {"description": PROBES[probe], **c} for probe, c in comparisons.items()},
        "pictures": {k: str(v) for k, v in pictures.items()},
        "stage_seconds": stage, "seconds_total": time.perf_counter() - t0,
    }
    names = ["random init", *runs]
    write_json(report_dir / "report.json", report)
    write_text(report_dir / "report.md", "\n".join(_markdown(s, report, datasets, main, names)) + "\n")
    print("\n".join(_table([(n, results[n]) for n in names])))
    verdict = "yes" if report["pretrained_beats_random_on_every_task"] else "NO"
    _say(f"pretrained beats random by a clear margin on every task ({CHECK} probe): {verdict} "
         f"(margin [95 % interval]: {_margin_text(comparisons[CHECK])})")
    for probe, c in comparisons.items():
        if probe != CHECK:
            _say(f"{probe} probe, for comparison: {_margin_text(c)}")
    _say("stages (min): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in stage.items())
         + f"; done in {report['seconds_total'] / 60:.1f} min. Report: {report_dir / 'report.md'}")
    return report
