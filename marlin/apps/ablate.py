"""`marlin ablate`: the paper's ablations (Table 7, Figure 3) as one command, a thin composition of public APIs.

Synthetic worlds (`marlin.apps.worlds.synthetic_worlds`) -> one pretraining per arm and seed (`marlin.train.pretrain`:
same data, data order, iteration budget and seed for every arm; resumable; a finished arm is never rerun) ->
features of every video (`marlin.downstream.probes.encode_videos`: `video_clips` windows through `encode_clips`, the
spatial readout) -> the logistic probe of every task (`marlin.downstream.probes.probe_all` on the `items` adapter's
datasets, the
downstream API's `train_logistic` and `compute_metrics`) -> `ablation.md` / `ablation.json` (mean +- spread
over seeds, `marlin.downstream.metrics.paired_bootstrap` intervals of each arm against the reference arm) and
plots. Arms are stored by what they are (their resolved pretraining config), so studies that share an arm
(`masking`'s tube and fasking arms are `modules`' + AT and MARLIN) share its runs.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import setting
from ..devices import resolve_device
from ..errors import MarlinError
from ..precision import ANY_DEVICE, REQUESTS, Precision, check_name

STUDIES = ("modules", "masking", "ratio", "encoder")
RANDOM = "random init"  # the floor row: an untrained encoder of the reference arm's configuration
# Beside the paper (Table 7, `marlin.paper`): the Table 7 row of each arm, and which of its columns stands for
# which of our tasks: expression ~ CMU-MOSEI emotion (linear probing), manipulated ~ FaceForensics++ AUC
# (fine-tuning); appearance and action have no Table 7 counterpart. Fixed before any study ran at a usable budget.
PAPER_ROWS = {
    "modules": {"VideoMAE (tube, no AT)": "modules / VideoMAE (tube masking, no AT)",
                "+ Fasking": "modules / + Fasking", "+ AT": "modules / + AT",
                "MARLIN (Fasking + AT)": "modules / + both (MARLIN)"},
    "masking": {"tube": "masking / Tube", "fasking": "masking / Fasking", "random": "masking / Random",
                "frame": "masking / Frame"},
}
PAPER_COLUMNS = {"expression": "emotion", "manipulated": "FF++ AUC"}
# Table 7's comparisons (arm, other) in each study
PAPER_COMPARISONS = {
    "modules": [("+ Fasking", "VideoMAE (tube, no AT)"), ("+ AT", "VideoMAE (tube, no AT)"),
                ("MARLIN (Fasking + AT)", "VideoMAE (tube, no AT)"), ("MARLIN (Fasking + AT)", "+ Fasking"),
                ("MARLIN (Fasking + AT)", "+ AT")],
    "masking": [("fasking", "tube"), ("fasking", "random"), ("fasking", "frame")],
}


@dataclass
class AblateSettings:
    """Settings of `marlin ablate` (a section of the config layer: `marlin ablate --help` lists them as flags)."""

    studies: list[str] = setting(f"studies to run: {', '.join(STUDIES)} (arms shared between them run once)",
                                 factory=lambda: ["masking"])
    out_dir: Path = setting("output folder: worlds (data/, data_test/), runs/ (one folder per arm and seed), and "
                            "<study>/ (ablation.md, ablation.json, plots, config.yaml)", Path("marlin_ablate"))
    data: str = setting("'synthetic' (worlds made here) or an items folder with labels in meta.json and "
                        "train/val/test lists (the synthetic layout)", "synthetic")
    config: str = setting("base pretraining config (shipped name or YAML): geometry, sizes, schedule",
                          "ablate14_cpu")
    steps: int = setting("pretraining iterations per arm (the budget, the same for every arm)", 300)
    minutes: float | None = setting("optional wall-clock cap per arm on top of steps (makes runs load-dependent)")
    seeds: int = setting("seeds per arm (weights, data order, masks, probe)", 3)
    num_items: int = setting("synthetic clips of the pretraining / probe-training world (80/10/10 % split)", 1000)
    test_items: int = setting("probe test clips from a second world (seed + 1); 0: the first world's test split", 600)
    frames: int = setting("frames per synthetic video (one window at the config's clip length and sample rate)", 16)
    size: int | None = setting("synthetic crop size in pixels (default: the config's img_size)")
    world_seed: int = setting("seed of the synthetic world (the test world is world_seed + 1)", 0)
    workers: int = setting("processes generating the synthetic worlds", 1)
    jobs: int | None = setting("arms run at once, each in its own process with cores / jobs threads (default: one "
                               "per CPU core without a GPU, 1 with one: on a 2-core CPU, two one-thread arms did "
                               "1.16x the iterations per CPU-second of one arm on both cores over 300 iterations, "
                               "1.36x over 60, benchmarks/bench_ablate14.py)")
    ratios: list[float] = setting("mask ratios of the 'ratio' study", factory=lambda: [0.5, 0.75, 0.85, 0.9, 0.95])
    ratio_reference: float = setting("reference arm of the 'ratio' study", 0.9)
    encoders: str | None = setting("'encoder' study sizes: YAML {name: {embed_dim, depth, num_heads}}; default: the "
                                   "marlin_vit_small / base / large presets' encoders")
    random_floor: bool = setting("also probe a randomly initialised encoder of the reference arm (per seed)", True)
    readout_pool: int = setting("average the spatial readout over pool x pool token positions (14x14 -> 7x7)", 2)
    feature_batch: int = setting("windows per encoder call in feature extraction", 32)
    precision: str = setting("feature extraction precision (marlin.precision): 32, bf16, auto (bf16 where the "
                             "CPU computes it natively: 1.5x faster at ablate14_cpu's 1568 tokens here) or 16 "
                             "(GPUs, not with downstream)", "auto")
    device: str = setting("device of feature extraction: auto (cuda when available), cpu, cuda[:k] (pretraining "
                          "picks its accelerator itself)", "auto")
    bootstrap: int = setting("paired-bootstrap resamples", 1000)
    progress: bool = setting("progress bars", True)
    downstream: list[str] = setting("downstream configs (YAML or shipped names, `marlin probe`'s) each arm is also "
                                    "probed with, e.g. for real data (--data a preprocessed folder); their metrics "
                                    "come without paired intervals", factory=list)
    overrides: dict = setting("extra TrainerSettings for every pretraining (e.g. batch_size)", factory=dict)

    def __post_init__(self):
        bad = [s for s in self.studies if s not in STUDIES]
        if bad or not self.studies:
            raise MarlinError(f"unknown study {', '.join(bad) or '(none)'}; choose from {', '.join(STUDIES)}")
        if self.steps < 1 or self.seeds < 1 or self.readout_pool < 1 or (self.jobs is not None and self.jobs < 1):
            raise MarlinError("steps, seeds, readout_pool and jobs must be at least 1")
        if self.ratio_reference not in self.ratios and "ratio" in self.studies:
            raise MarlinError(f"ratio_reference {self.ratio_reference} is not one of the ratios {self.ratios}")
        check_name(self.precision, REQUESTS)
        if self.downstream and self.precision not in ANY_DEVICE:  # was silently float32 for the probes
            raise MarlinError(f"precision {self.precision} with --downstream: the downstream probes extract in "
                              f"{', '.join(ANY_DEVICE)} (no float16 feature cache); choose one of those")


@dataclass
class Arm:
    """One arm of a study: its name there and the pretraining-config values that make it."""

    name: str
    values: dict


def _say(msg: str) -> None:
    print(f"[marlin ablate] {msg}", flush=True)


def encoder_sizes(source: str | None) -> dict:
    """{name: {embed_dim, depth, num_heads}} from a YAML, or the encoders of the ViT-S / B / L presets."""
    from ..config import read_yaml
    from ..train.config import CONFIG_DIR

    if source:
        sizes = read_yaml(source)
        if not isinstance(sizes, dict) or not sizes or not all(
                isinstance(v, dict) and set(v) == {"embed_dim", "depth", "num_heads"} for v in sizes.values()):
            raise MarlinError(f"{source}: expected {{name: {{embed_dim, depth, num_heads}}}} for every size")
        return sizes
    return {name: read_yaml(CONFIG_DIR / f"marlin_vit_{name}.yaml")["encoder"] for name in ("small", "base", "large")}


def study_arms(study: str, s: AblateSettings) -> tuple[list[Arm], str]:
    """The arms of a study and the name of its reference arm (what every other arm is compared with)."""
    if study == "modules":  # Table 7's rows: VideoMAE (tube masking, no adversarial term), + Fasking, + AT, both
        return [Arm("VideoMAE (tube, no AT)", {"mask_strategy": "tube", "adv_loss": False}),
                Arm("+ Fasking", {"mask_strategy": "fasking", "adv_loss": False}),
                Arm("+ AT", {"mask_strategy": "tube", "adv_loss": True}),
                Arm("MARLIN (Fasking + AT)", {"mask_strategy": "fasking", "adv_loss": True})], "VideoMAE (tube, no AT)"
    if study == "masking":  # same ratio and budget, with the adversarial term as Table 7's masking study (its Tube
        # row is the modules study's + AT row): only the masking differs
        arms = [Arm(m, {"mask_strategy": m, "adv_loss": True})
                for m in ("tube", "fasking", "fasking_opp", "random", "frame", "fasking_inner")]
        return arms, "tube"
    if study == "ratio":  # Fasking with the base config's adversarial setting, at each ratio
        return [Arm(f"{r:g}", {"mask_ratio": float(r)}) for r in s.ratios], f"{s.ratio_reference:g}"
    sizes = encoder_sizes(s.encoders)
    arms = [Arm(name, {"model.encoder_embed_dim": v["embed_dim"], "model.encoder_depth": v["depth"],
                       "model.encoder_num_heads": v["num_heads"]}) for name, v in sizes.items()]
    return arms, arms[0].name


def _digest(data) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:10]


def arm_config(s: AblateSettings, arm: Arm, seed: int):
    """The resolved `PretrainConfig` of an arm and seed (base config + the arm's values + budget + seed)."""
    from ..train import pretrain_config

    trainer = {f"trainer.{k}": v for k, v in s.overrides.items()}
    return pretrain_config(s.config, values={**arm.values, **trainer, "trainer.seed": seed,
                                             "trainer.max_steps": s.steps, "trainer.max_minutes": s.minutes})


def arm_dir(out: Path, cfg, data_id: str) -> Path:
    """OUT/runs/<strategy>_r<ratio>_<at|noat>_e<width>x<depth>_<hash of the config without its seed and data>/."""
    plain = cfg.to_dict()
    plain["trainer"] = {k: v for k, v in plain["trainer"].items() if k != "seed"}
    m = cfg.model
    slug = (f"{cfg.mask_strategy}_r{cfg.mask_ratio:g}_{'at' if cfg.adv_loss else 'noat'}_"
            f"e{m.encoder_embed_dim}x{m.encoder_depth}")
    return out / "runs" / f"{slug}_{_digest([plain, data_id])}"


def pool_readout(x: np.ndarray, grid_hw: tuple[int, int], pool: int) -> np.ndarray:
    """(N, 2 * H' * W' * D) spatial readout (mean and std over time per position) -> the same averaged over
    pool x pool blocks of positions: (N, 2 * ceil(H'/pool) * ceil(W'/pool) * D)."""
    if pool == 1:
        return x
    h, w = grid_hw
    v = x.reshape(len(x), 2, h, w, -1)
    hp, wp = -(-h // pool), -(-w // pool)
    pad = np.full((len(x), 2, hp * pool, wp * pool, v.shape[-1]), np.nan, v.dtype)
    pad[:, :, :h, :w] = v
    blocks = pad.reshape(len(x), 2, hp, pool, wp, pool, -1)
    return np.nanmean(blocks, axis=(3, 5)).reshape(len(x), -1).astype(np.float32)


class Context:
    """What every arm of a run shares: the settings, the task datasets, the videos and the data's identity."""

    def __init__(self, s: AblateSettings):
        from .worlds import synthetic_worlds, task_datasets
        from ..train import pretrain_config

        self.s, self.out = s, Path(s.out_dir)
        self.device = resolve_device(s.device)
        self.precision = Precision.resolve(s.precision, self.device)  # resolved: "auto" differs per machine
        base = pretrain_config(s.config)
        for source in s.downstream:  # read before any world or pretraining: a bad file stops the run at once
            _downstream_config(source, self.out / "encoder.safetensors", self.out, 0, s.precision)
        self.datasets, self.videos, self.splits = {}, [], {}
        if s.data == "synthetic":
            size = s.size or base.model.img_size
            self.data_dir, test_dir = synthetic_worlds(self.out, s.num_items, s.test_items, s.frames, size,
                                                       s.world_seed, s.workers, s.progress, _say)
            test_items = s.test_items
        else:
            self.data_dir, test_dir, test_items = Path(s.data), None, 0
            if not self.data_dir.is_dir():
                raise MarlinError(f"{self.data_dir}: no such data folder")
            if not s.downstream and not (self.data_dir / "train.txt").is_file():
                raise MarlinError(f"{self.data_dir}: no train.txt; without --downstream configs the data must be "
                                  "a world in the synthetic layout (items with its tasks' labels, split lists)")
        train_list = self.data_dir / "train.txt"
        self.train_data = train_list if train_list.is_file() else self.data_dir
        if s.data == "synthetic" or not s.downstream:  # the world's own tasks
            self.datasets = task_datasets(self.data_dir, test_dir, test_items)
            splits = next(iter(self.datasets.values())).splits
            self.videos = [str(smp.source) for samples in splits.values() for smp in samples]
            self.splits = {k: len(v) for k, v in splits.items()}
            record = self.data_dir / "synth.json"
            self.data_id = {"train_list": train_list.read_text(),
                            "world": record.read_text() if record.is_file() else str(self.data_dir),
                            "test": [str(smp.source) for smp in splits["test"]]}
        else:
            self.data_id = {"train_data": str(self.train_data.resolve()),
                            "train_list": train_list.read_text() if train_list.is_file() else None}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_arm(ctx: Context, arm: Arm | None, seed: int) -> dict:
    """Pretrain (or resume) one arm at one seed, extract its features and probe every task; returns its record
    (RUN/result.json). `arm` None: the random-init floor of the reference configuration. A run whose record
    exists with the same key is not rerun; an interrupted pretraining resumes from its last checkpoint."""
    from ..atomic import write_json

    s = ctx.s
    cfg = arm_config(s, arm or Arm(RANDOM, {}), seed)
    random = arm is None
    folder = record_folder(ctx, arm, seed)
    what_features = [cfg.to_dict(), ctx.data_id, random, s.readout_pool, ctx.precision.name]
    key = _digest(what_features + ([list(s.downstream)] if s.downstream else []))
    done = _read_json(folder / "result.json")
    if done and done.get("key") == key:
        return done
    t0 = time.perf_counter()
    encoder, pre = _encoder(ctx, cfg, folder, random, seed)
    t1 = time.perf_counter()
    record = {"key": key, "what": cfg.to_dict(), "random_init": random, "seed": seed, "pretraining": pre,
              "splits": ctx.splits, "metrics": {}, "tasks": {}, "val": {}, "penalty": {}}
    if ctx.datasets:
        from ..downstream.probes import probe_all

        feats = _features(ctx, encoder, cfg, folder, _digest(what_features))  # not keyed by --downstream
        t2 = time.perf_counter()
        probed = probe_all(ctx.datasets, dict(zip(ctx.videos, feats)), seed=seed, probes=("logistic",))
        _save_scores(folder / "scores.npz", probed)
        record.update(readout=f"spatial, pooled {s.readout_pool}x{s.readout_pool}",
                      metrics={t: r["logistic"]["test"] for t, r in probed.items()},
                      tasks={t: [ds.task.kind, ds.task.metric] for t, ds in ctx.datasets.items()},
                      val={t: r["logistic"]["val"] for t, r in probed.items()},
                      penalty={t: r["logistic"]["penalty"] for t, r in probed.items()})
        record["seconds"] = {"pretraining": t1 - t0, "features": t2 - t1, "probes": time.perf_counter() - t2}
    for source in s.downstream:  # real data: the downstream API's probe runs (no test scores: no intervals)
        name, kind, metric, value = _downstream(ctx, source, encoder, folder, seed)
        record["metrics"][name], record["tasks"][name] = {metric: value}, [kind, metric]
    write_json(folder / "result.json", record)
    return record


def _downstream_config(source: str, weights: Path, folder: Path, seed: int, precision: str):
    """The `marlin probe` config of a --downstream file for one arm (its encoder weights, seed and folder)."""
    from ..downstream.config import load_run_config

    return load_run_config(source, values={"encoder.model": None, "encoder.weights": str(weights), "seeds": [seed],
                                           "out": str(folder / "downstream" / Path(source).stem),
                                           "extract_precision": precision})


def _downstream(ctx: Context, source: str, encoder, folder: Path, seed: int) -> tuple[str, str, str, float]:
    """`marlin probe`'s run (`marlin.downstream.probe.run_probe`) of a downstream config with the arm's encoder
    (its weights saved as RUN/encoder.safetensors), seed `seed`, output in RUN/downstream/<config name>/;
    returns (dataset/task, kind, metric, the metric's test value averaged over the config's folds)."""
    from ..downstream.probe import run_probe

    weights = folder / "encoder.safetensors"
    encoder.save(weights)  # always this arm's weights (a redone pretraining must not probe the old file)
    cfg = _downstream_config(source, weights, folder, seed, ctx.s.precision)
    data = run_probe(cfg, progress=ctx.s.progress)
    metric = data["task"]["monitor"]
    values = [r["test"][metric] for r in data["runs"] if r["test"].get(metric) is not None]
    return (f"{cfg.dataset}/{data['task']['name']}", data["task"]["kind"], metric,
            float(np.mean(values)) if values else None)


def _save_scores(path: Path, probed: dict) -> None:
    from ..atomic import atomic_path

    arrays = {}
    for task, r in probed.items():
        arrays[f"{task}__scores"] = np.asarray(r["scores"]["logistic"])
        arrays[f"{task}__targets"] = np.asarray(r["targets"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _encoder(ctx: Context, cfg, folder: Path, random: bool, seed: int):
    """The arm's encoder: pretrained (resumed / reused) or randomly initialised; and its pretraining summary."""
    import torch

    from ..atomic import write_json
    from ..models import Marlin
    from ..train import pretrain

    if random:
        torch.manual_seed(seed)  # as pretraining initialises its weights
        return Marlin(cfg.model, full_model=False), {"iterations": 0}
    run = folder / "pretrain"
    record = _read_json(run / "pretrained.json")
    if (record and record.get("config") == json.loads(json.dumps(cfg.to_dict()))
            and Path(record["exports"]["safetensors"]).is_file()):
        return Marlin.from_file(None, record["exports"]["safetensors"], full_model=False), record["summary"]
    ckpt = run / "checkpoints" / "last.ckpt"
    resume = ckpt if ckpt.is_file() else None
    _say(f"    pretraining {folder.parent.name} seed {seed}: {cfg.trainer.max_steps} iterations"
         + (f" (resuming {ckpt})" if resume else ""))
    r = pretrain(cfg, ctx.train_data, run, resume=resume, progress=ctx.s.progress, tensorboard=False,
                 mask_picture=False)
    if r.stopped_by not in ("max_steps", "max_minutes"):  # e.g. Ctrl-C, which Lightning turns into a return
        raise MarlinError(f"{run}: pretraining stopped at iteration {r.iterations} of {cfg.trainer.max_steps} "
                          f"({r.stopped_by}); rerun the same command to resume it")
    losses = [row["rec_loss"] for row in r.history if row.get("kind") == "train" and "rec_loss" in row]
    summary = {"iterations": r.iterations, "minutes": r.seconds / 60, "stopped_by": r.stopped_by,
               "precision": r.precision, "final_rec_loss": losses[-1] if losses else None, "resumed": bool(resume),
               "threads": torch.get_num_threads()}
    write_json(run / "pretrained.json", {"config": cfg.to_dict(), "summary": summary,
                                         "exports": {k: str(v) for k, v in r.exports.items()}})
    return Marlin.from_file(None, r.exports["safetensors"], full_model=False), summary


def _features(ctx: Context, encoder, cfg, folder: Path, key: str) -> np.ndarray:
    """(N, F) probe features of every video (cached in RUN/features.npy, recorded with the arm's key)."""
    from ..atomic import save_npy, write_json
    from ..downstream.probes import encode_videos

    path, rec = folder / "features.npy", folder / "features.json"
    meta = _read_json(rec)
    if path.is_file() and meta and meta.get("key") == key and meta.get("videos") == ctx.videos:
        return np.load(path)
    x = encode_videos({"arm": encoder.to(ctx.device)}, ctx.videos, cfg.sample_rate, "spatial", ctx.s.feature_batch,
                      ctx.precision, progress=ctx.s.progress, desc=f"features {folder.parent.name}")["arm"]
    x = pool_readout(x, cfg.model.grid[1:], ctx.s.readout_pool)
    save_npy(path, x)
    write_json(rec, {"key": key, "videos": ctx.videos, "shape": list(x.shape), "precision": ctx.precision.name})
    return x


# ---- the report -------------------------------------------------------------------------------------------------
def _scores(record_dir: Path) -> dict:
    """The test scores and targets of a run's synthetic tasks ({} for a run probed only with downstream configs)."""
    if not (record_dir / "scores.npz").is_file():
        return {}
    with np.load(record_dir / "scores.npz") as z:
        return {k: z[k] for k in z.files}


def pooled(kind: str, metric: str, scores: list, targets: list) -> tuple[str, str, np.ndarray, np.ndarray]:
    """Several seeds' test scores and targets of one task as ONE problem whose metric is the mean over the seeds
    of the per-seed metric, for `paired_bootstrap`: (kind, metric, scores, targets). AUCs: each seed's labels
    side by side ((N, L*S), multi-label mean AUC), so a resample draws the same clips for every seed; accuracy:
    the seeds' clips one after the other (N*S rows; each seed's clips resampled with the others)."""
    same = all(np.array_equal(targets[0], t) for t in targets)
    if metric in ("auc", "auc_label_mean") and same:
        cols = [np.asarray(v).reshape(len(v), -1) for v in scores]
        return ("multilabel", "auc_label_mean", np.concatenate(cols, 1),
                np.concatenate([np.asarray(targets[0]).reshape(len(targets[0]), -1)] * len(targets), 1))
    if metric == "acc" or len(scores) == 1:
        return kind, metric, np.concatenate(scores), np.concatenate(targets)
    raise MarlinError(f"cannot pool the seeds' {metric} over different test clips")


def record_tasks(record: dict) -> dict:
    """{task: (kind, metric)} of a run's record (records without "tasks" hold the synthetic world's tasks)."""
    from .worlds import task_metric
    from ..synth import TASKS

    return record.get("tasks") or {t: (TASKS[t][0], task_metric(t)) for t in record["metrics"]}


def summarize(study: str, arms: list[Arm], reference: str, runs: dict, tasks: dict, n_boot: int) -> dict:
    """The study's numbers: per arm and task ({task: (kind, metric)}), the metric's mean and spread (sample std)
    over the seeds done, and the paired-bootstrap interval of (arm - reference) over the test clips of all seeds
    both have, pooled (each seed's test scores and targets stacked); per-seed intervals too (tasks with test
    scores only). runs: {arm name: {seed: (record, folder)}}."""
    from ..downstream.metrics import paired_bootstrap

    rows = {}
    for name, by_seed in runs.items():
        row = {}
        for task, (kind, metric) in tasks.items():
            vals = [rec["metrics"].get(task, {}).get(metric) for rec, _ in by_seed.values()]
            vals = [v for v in vals if v is not None]
            row[task] = {"metric": metric, "seeds": sorted(by_seed), "values": vals,
                         "mean": float(np.mean(vals)) if vals else None,
                         "spread": float(np.std(vals, ddof=1)) if len(vals) > 1 else None}
            ref = runs.get(reference, {})
            common = sorted(set(by_seed) & set(ref))
            measured = all(r[k][0]["metrics"].get(task, {}).get(metric) is not None
                           for k in common for r in (by_seed, ref))
            if name != reference and common and measured:
                diffs = [by_seed[k][0]["metrics"][task][metric] - ref[k][0]["metrics"][task][metric] for k in common]
                a = [_scores(by_seed[k][1]) for k in common]
                b = [_scores(ref[k][1]) for k in common]
                if not all(f"{task}__scores" in z for z in a + b):  # a downstream config's task: no test scores
                    row[task]["delta"] = {"seeds": common, "mean": float(np.mean(diffs)),
                                          "per_seed": [float(d) for d in diffs], "interval_pooled": None}
                    continue
                targets = [z[f"{task}__targets"] for z in a]
                k, m, base, ys = pooled(kind, metric, [z[f"{task}__scores"] for z in b], targets)
                other = pooled(kind, metric, [z[f"{task}__scores"] for z in a], targets)[2]
                row[task]["delta"] = {
                    "seeds": common, "mean": float(np.mean(diffs)), "per_seed": [float(d) for d in diffs],
                    "interval_pooled": list(paired_bootstrap(k, m, base, other, ys, n=n_boot)),
                    "interval_per_seed": [list(paired_bootstrap(kind, metric, zb[f"{task}__scores"],
                                                                za[f"{task}__scores"], za[f"{task}__targets"],
                                                                n=n_boot)) for za, zb in zip(a, b)]}
        rows[name] = row
    return {"study": study, "reference": reference, "arms": [a.name for a in arms], "rows": rows,
            "metrics": {t: m for t, (_, m) in tasks.items()}}


def _cell(r: dict) -> str:
    if r["mean"] is None:
        return "–"
    spread = f" ± {r['spread']:.3f}" if r["spread"] is not None else ""
    return f"{r['mean']:.3f}{spread} (n={len(r['values'])})"


def _delta(r: dict) -> str:
    d = r.get("delta")
    if not d:
        return "reference" if "delta" not in r else "–"
    if d["interval_pooled"] is None:
        return f"{d['mean']:+.3f} (no interval)"
    lo, hi = d["interval_pooled"]
    mark = " **>**" if lo > 0 else " **<**" if hi < 0 else ""
    return f"{d['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]{mark}"


def markdown(summary: dict, s: AblateSettings, what: dict, tasks: list[str]) -> list[str]:
    """ablation.md: one row per arm, one column per task metric; then the intervals against the reference."""
    rows, ref, metric = summary["rows"], summary["reference"], summary["metrics"]
    head = "| arm | " + " | ".join(f"{t} ({metric[t]})" for t in tasks) + " |"
    sep = "|---|" + "---|" * len(tasks)
    lines = [f"# Ablation: {summary['study']}", "",
             (f"Base config `{s.config}`, {s.steps} pretraining iterations per arm, seeds 0..{s.seeds - 1}; logistic "
             f"probe (L2 chosen on val) on the spatial readout pooled {s.readout_pool}x{s.readout_pool}; test clips: "
             f"{what['splits'].get('test')} per seed. Mean ± sample std over the seeds done (n)."), "",
             head, sep]
    lines += [f"| {name} | " + " | ".join(_cell(rows[name][t]) for t in tasks) + " |" for name in rows]
    lines += ["", (f"Arm − reference (`{ref}`): mean over the common seeds of the per-seed difference [95 % paired "
                   "bootstrap interval over the test clips of those seeds pooled; **>** / **<**: interval above / "
                   "below 0]"),
              "", head, sep]
    lines += [f"| {name} | " + " | ".join(_delta(rows[name][t]) for t in tasks) + " |" for name in rows]
    return lines + [""]


def plot(summary: dict, study: str, tasks: list[str], folder: Path) -> list[Path]:
    """ratio.png (metric against the mask ratio, like Figure 3) for the ratio study, else one bar chart per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

    rows, task_metric = summary["rows"], summary["metrics"].get
    names = [n for n in rows if rows[n][tasks[0]]["mean"] is not None]
    figs = []
    if study == "ratio":
        arms = [n for n in names if n != RANDOM]
        fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3), squeeze=False)
        for ax, t in zip(axes[0], tasks):
            x = [float(n) for n in arms]
            ax.errorbar(x, [rows[n][t]["mean"] for n in arms], [rows[n][t]["spread"] or 0 for n in arms], marker="o")
            ax.set(title=t, xlabel="mask ratio", ylabel=task_metric(t))
        figs.append((fig, folder / "ratio.png"))
    else:
        for t in tasks:
            fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(names), 3.2))
            ax.bar(range(len(names)), [rows[n][t]["mean"] for n in names],
                   yerr=[rows[n][t]["spread"] or 0 for n in names], capsize=3, color="tab:blue")
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
            lo = min(rows[n][t]["mean"] for n in names)
            ax.set(title=f"{study}: {t}", ylabel=task_metric(t), ylim=(max(0.0, lo - 0.05), None))
            figs.append((fig, folder / f"{t}.png"))
    paths = []
    for fig, path in figs:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


def report(ctx: Context, study: str, arms: list[Arm], reference: str, runs: dict) -> dict:
    """Write OUT/<study>/ablation.md, ablation.json and the plots from the runs done so far."""
    from ..atomic import write_json, write_text
    from ..config import save_resolved

    s = ctx.s
    folder = ctx.out / study
    folder.mkdir(parents=True, exist_ok=True)
    save_resolved(s, folder)
    done = {name: by_seed for name, by_seed in runs.items() if by_seed}
    kinds = {}
    for by_seed in done.values():
        for rec, _ in by_seed.values():
            kinds.update(record_tasks(rec))
    tasks = list(kinds)
    summary = summarize(study, arms, reference, done, kinds, s.bootstrap)
    expected = len(arms) + (1 if s.random_floor else 0)
    summary.update(settings={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()},
                   splits=ctx.splits, complete=sum(len(v) for v in done.values()) == expected * s.seeds,
                   runs={n: {str(k): str(f) for k, (_, f) in v.items()} for n, v in done.items()},
                   configs={a.name: a.values for a in arms})
    summary["paper"] = beside_paper(study, done, kinds, s.bootstrap)
    if done and tasks:
        summary["plots"] = [str(p) for p in plot(summary, study, tasks, folder)]
    write_json(folder / "ablation.json", summary)
    write_text(folder / "ablation.md", "\n".join(markdown(summary, s, {"splits": ctx.splits}, tasks)
                                                 + paper_markdown(summary["paper"])) + "\n")
    return summary


def verdict(paper_delta: float, interval) -> str:
    """Whether our interval of (arm - other) agrees with the paper's difference: "agree" when it lies on the
    paper's side of zero, "disagree" when on the other side, "unresolved" when it contains zero (a paper
    difference of exactly zero agrees with an interval containing zero and disagrees with any other)."""
    if interval is None:
        return "unresolved"
    lo, hi = interval
    if paper_delta == 0:
        return "agree" if lo <= 0 <= hi else "disagree"
    if lo > 0 or hi < 0:
        return "agree" if (lo > 0) == (paper_delta > 0) else "disagree"
    return "unresolved"


def beside_paper(study: str, runs: dict, tasks: dict, n_boot: int) -> list[dict]:
    """Table 7's comparisons of a study with ours: per comparison and mapped task, the paper's difference
    (`marlin.paper`, in its units), ours (mean over common seeds, paired-bootstrap interval) and the verdict;
    comparisons whose arms have not both run yet are listed without ours."""
    from ..paper import paper_value

    out = []
    tasks = {t: tasks[t] for t in PAPER_COLUMNS if t in tasks}  # only the tasks that stand for a paper column
    for arm, other in PAPER_COMPARISONS.get(study, []):
        rows = PAPER_ROWS[study]
        both = {k: runs[k] for k in (arm, other) if runs.get(k)}
        ours = summarize(study, [], other, both, tasks, n_boot)["rows"].get(arm, {}) if len(both) == 2 else {}
        for task, column in PAPER_COLUMNS.items():
            paper = paper_value(7, rows[arm], column) - paper_value(7, rows[other], column)
            delta = ours.get(task, {}).get("delta")
            interval = delta.get("interval_pooled") if delta else None
            out.append({"arm": arm, "other": other, "task": task, "paper_column": column,
                        "paper_delta": round(paper, 6), "ours": None if not delta else delta["mean"],
                        "interval": interval, "seeds": None if not delta else delta["seeds"],
                        "verdict": verdict(paper, interval) if delta else "not run"})
    return out


def paper_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return ["The paper's Table 7 has no comparison for this study.", ""]
    lines = ["## Beside the paper (Table 7)", "",
             "The paper's difference (its units: MOSEI emotion in accuracy points, FF++ AUC) beside ours on the task "
             "that stands for it (expression, manipulated), with our 95 % interval; agree / disagree: our interval "
             "lies on the paper's / the other side of zero; unresolved: it contains zero.", "",
             "| comparison | paper (column) | paper | ours (task) | ours [95 % interval] | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ours = "–" if r["ours"] is None else (f"{r['ours']:+.3f}" + ("" if r["interval"] is None else
                                             f" [{r['interval'][0]:+.3f}, {r['interval'][1]:+.3f}]"))
        lines.append(f"| {r['arm']} − {r['other']} | {r['paper_column']} | {r['paper_delta']:+.4g} | {r['task']} | "
                     f"{ours} | {r['verdict']} |")
    return lines + [""]


def run_ablation(s: AblateSettings) -> dict:
    """Run the studies of `s` seed by seed (every arm of seed 0 first, so a stopped run has balanced results),
    `jobs` arms at once, writing each study's report after every arm; returns {study: summary}."""
    t0 = time.perf_counter()
    ctx = Context(s)
    plans = {study: study_arms(study, s) for study in s.studies}
    runs = {study: {a.name: {} for a in arms} | ({RANDOM: {}} if s.random_floor else {})
            for study, (arms, _) in plans.items()}
    summaries = {}
    jobs = arm_jobs(s)
    if jobs > 1:
        _say(f"{jobs} arms at once, {_threads(jobs)} thread(s) each")
    for seed in range(s.seeds):
        unique = {}
        for study, (arms, ref) in plans.items():
            for arm in arms:
                unique.setdefault(arm_dir(ctx.out, arm_config(s, arm, seed), ctx.data_id), []).append((study, arm))
        todo = [(entries[0][1], entries) for entries in unique.values()]
        if s.random_floor:
            todo.append((None, [(study, None) for study in plans]))
        for (arm, entries), rec in _run_arms(ctx, todo, seed, jobs):
            label = RANDOM if arm is None else arm.name
            folder = record_folder(ctx, arm, seed)
            for study, a in entries:
                runs[study][RANDOM if a is None else a.name][seed] = (rec, folder)
            line = ", ".join(f"{t} {rec['metrics'][t][m]:.3f}" for t, (_, m) in record_tasks(rec).items()
                             if rec["metrics"][t].get(m) is not None)
            _say(f"    {label} seed {seed} ({', '.join(sorted({st for st, _ in entries}))}): {line}")
            for study in {st for st, _ in entries}:
                summaries[study] = report(ctx, study, plans[study][0], plans[study][1], runs[study])
    _say(f"done in {(time.perf_counter() - t0) / 60:.1f} min: "
         + ", ".join(str(ctx.out / st / "ablation.md") for st in plans))
    return summaries


def arm_jobs(s: AblateSettings) -> int:
    """Arms run at once: `jobs`, else one per CPU core when pretraining runs on the CPU, 1 with a GPU (arms
    would share it)."""
    import os

    import torch

    if s.jobs is not None:
        return s.jobs
    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def _threads(jobs: int) -> int:
    import os

    return max(1, (os.cpu_count() or 1) // jobs)


def _run_arms(ctx: Context, todo: list, seed: int, jobs: int):
    """Yield ((arm, entries), record) for every job of one seed: in this process one after another (jobs 1), or
    in `jobs` worker processes of cores / jobs torch threads each, in the order they finish. Workers show no
    progress bars (one line per arm started and finished instead). A failing arm ends the run after the arms
    already running have finished (their records are kept)."""
    if jobs == 1 or len(todo) == 1:
        for arm, entries in todo:
            _say(f"seed {seed}: {RANDOM if arm is None else arm.name}")
            yield (arm, entries), run_arm(ctx, arm, seed)
        return
    import copy
    import dataclasses
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    quiet = copy.copy(ctx)  # workers show no progress bars
    quiet.s = dataclasses.replace(ctx.s, progress=False)
    pool = ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_threads, initargs=(_threads(jobs),))
    try:
        pending = {}
        for arm, entries in todo:
            _say(f"seed {seed}: {RANDOM if arm is None else arm.name} started")
            pending[pool.submit(run_arm, quiet, arm, seed)] = (arm, entries)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                yield job, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def record_folder(ctx: Context, arm: Arm | None, seed: int) -> Path:
    """RUN = OUT/runs/<arm>/seed<k> (the random floor: OUT/runs/untrained_<base config's arm>/seed<k>; not
    "random_", which is the random-masking arms' prefix)."""
    cfg = arm_config(ctx.s, arm or Arm(RANDOM, {}), seed)
    folder = arm_dir(ctx.out, cfg, ctx.data_id)
    return (folder.parent / f"untrained_{folder.name}" if arm is None else folder) / f"seed{seed}"
