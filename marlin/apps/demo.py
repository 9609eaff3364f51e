"""`marlin demo`: the whole system end to end on the synthetic talking-face world, on a CPU, in minutes.

A thin composition of the public APIs: `marlin.apps.worlds.synthetic_worlds` (a world to train and probe on, and
a second world to score on) -> `marlin.train.pretrain` (a tiny MARLIN within a time budget) -> the `items` dataset
adapter (`marlin.apps.worlds.task_datasets`: the labels of the items' meta.json) -> features of every video with
the pretrained encoder and a random one of the same size (`marlin.downstream.probes.encode_videos`: windows through
`marlin.extract.encode_clips`) -> the downstream probes (`marlin.downstream.probes.probe_all`: `train_logistic`,
`train_linear`, ridge) and metrics (`compute_metrics`, `paired_bootstrap`) -> a report (Markdown + JSON, loss curve,
reconstructions, masks).
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import setting as _help  # a section field with its help text
from ..downstream.probes import PROBES, READOUTS, encode_videos, probe_all
from ..precision import ANY_DEVICE, Precision, check_name
from .worlds import synthetic_worlds, task_datasets, task_metric


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
        check_name(self.precision, PRECISIONS)


def _say(msg: str) -> None:
    print(f"[marlin demo] {msg}", flush=True)


CHECK = "logistic"  # the check's probe, decided before it was measured on any demo features (docs/demo.md)
PRECISIONS = ANY_DEVICE  # the extraction precisions the demo offers: those of every device ("16" is GPU-only)


def compare(pre: dict, rnd: dict, probe: str, seed: int = 0) -> dict:
    """Pretrained − random margins of one probe on every task, their 95 % paired-bootstrap intervals over the
    test clips (`marlin.downstream.metrics.paired_bootstrap`, 1000 resamples) and the verdict."""
    from ..downstream.metrics import paired_bootstrap
    from ..synth import TASKS

    margins = {t: pre[t][probe]["test"][task_metric(t)] - rnd[t][probe]["test"][task_metric(t)] for t in pre}
    intervals = {t: paired_bootstrap(TASKS[t][0], task_metric(t), rnd[t]["scores"][probe], pre[t]["scores"][probe],
                                     pre[t]["targets"], seed=seed) for t in pre}
    return {"margin_pretrained_minus_random": margins, "margin_95ci_paired_bootstrap": intervals,
            "pretrained_higher_on_every_task": all(v > 0 for v in margins.values()),
            "pretrained_beats_random_on_every_task": all(lo > 0 for lo, _ in intervals.values())}


def _pretrain(s: DemoSettings, cfg, data_dir: Path, out: Path):
    from ..train import pretrain

    overrides = dict(s.overrides)
    if s.batch_size:
        overrides["batch_size"] = s.batch_size
    return pretrain(cfg, data_dir, out, max_minutes=s.minutes, max_steps=s.max_steps, progress=s.progress,
                    tensorboard=False, seed=s.seed, **overrides)


def _random_twin(result, seed: int):
    """A randomly initialised encoder of the same configuration, built as pretraining starts it."""
    from ..models import Marlin

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


def run_demo(s: DemoSettings) -> dict:
    """Run the demo; returns the report dict (also written to OUT/report/report.json and report.md)."""
    from ..atomic import write_json, write_text
    from ..models import Marlin
    from ..train import pretrain_config

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

    precision = Precision.resolve(s.precision, "cpu")  # recorded resolved ("auto" differs per machine)
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
    from ..curves import plot_history

    pictures = {"loss_curve": plot_history(main.history, report_dir / "loss_curve.png")}
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
        "feature_precision": precision.name,
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
