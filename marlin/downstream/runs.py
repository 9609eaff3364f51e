"""The run loop shared by `marlin probe` and `marlin finetune`: folds x few-shot fractions x seeds, each run
resumable (its metrics.json records a hash of the settings), bad inputs reported, results written."""
from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path

from ..atomic import write_json, write_text
from ..config import save_resolved
from .config import RunConfig
from .datasets import Dataset, load_dataset, num_folds
from .model import save_downstream_checkpoint
from .report import write_results

TITLES = {"probe": ("Linear probing", "lp"), "finetune": ("Fine-tuning", "ft")}
# prepare(dataset, fold, notes) -> train(fraction, seed) -> (run dict, checkpoint file name, tensors, meta)
Trainer = Callable[[float, int], tuple[dict, str, dict, dict]]


def run_settings(cfg: RunConfig) -> dict:
    """The settings that define a run's result (its hash, and the identity of a fine-tuning state)."""
    keys = ("dataset", "root", "task", "dataset_options", "encoder", "crop_face", "windows", "reduction", "train",
            "precision")
    settings = cfg.to_dict()
    return {k: settings[k] for k in keys}


def run_inputs(cfg: RunConfig, mode: str) -> dict:
    """What a run's result depends on besides its settings: the encoder weights' content (a path may be
    rewritten with other weights) and, for a probe, the extraction precision resolved on this machine ("auto"
    differs between machines)."""
    from ..models.config import encoder_record
    from .features import probe_precision

    enc = cfg.encoder
    inputs = {"encoder": encoder_record(enc.model, enc.weights, enc.seed) if enc.weights is not None else None}
    if mode == "probe":
        inputs["extract_precision"] = probe_precision(cfg).name
    return inputs


def run_hash(cfg: RunConfig, inputs: dict, *parts) -> str:
    """The hash a finished run's metrics.json records: its settings, `run_inputs` and ``parts``."""
    blob = json.dumps([run_settings(cfg), inputs, *parts], sort_keys=True, default=str)
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


def run_all(cfg: RunConfig, mode: str, prepare: Callable[[Dataset, int, list], Trainer]) -> dict:
    """Every run of a (loaded) config; returns the metrics.json data. Sets ``cfg.out`` when unset;
    writes the resolved config to ``<out>/config.yaml``, and beside each trained run's weights its curves.png
    (`marlin.curves.plot_fit`: the epochs of an SGD probe or of fine-tuning)."""
    from ..curves import CURVES, plot_fit
    from ..errors import require

    require("matplotlib", "downstream", "the runs' curves.png")  # before any work
    title, suffix = TITLES[mode]
    out = Path(cfg.out or f"runs/{cfg.dataset}_{cfg.task or 'default'}_{suffix}")
    cfg.out = str(out)
    folds = cfg.folds or list(range(1, num_folds(cfg.dataset) + 1))
    inputs = run_inputs(cfg, mode)

    def dataset(fold: int) -> Dataset:
        return load_dataset(cfg.dataset, cfg.root, cfg.task, fold=fold, **cfg.dataset_options)

    first = dataset(folds[0])  # the data and the encoder's weights are checked before OUT is written
    save_resolved(cfg, out)
    runs, notes, task = [], [], None
    for fold in folds:
        ds = first if fold == folds[0] else dataset(fold)
        task = ds.task
        print(f"fold {fold}: {ds.summary()}", file=sys.stderr)
        report_skipped(out, fold, ds.skipped, "samples")
        train = prepare(ds, fold, notes)
        for frac in cfg.few_shot:
            for seed in cfg.seeds:
                frac, seed = float(frac), int(seed)
                name, h = run_name(fold, frac, seed), run_hash(cfg, inputs, mode, fold, frac, seed)
                done = out / name / "metrics.json"
                if done.is_file() and json.loads(done.read_text()).get("hash") == h:
                    runs.append(json.loads(done.read_text()))
                    continue
                run, ckpt, tensors, meta = train(frac, seed)
                run = {"name": name, "hash": h, "fold": fold, "seed": seed, "few_shot": frac, **run}
                # the encoder's fingerprint, so `marlin predict` can check the weights it finds later
                meta = {"mode": mode, "task": task.to_dict(), "run": cfg.to_dict(), "encoder": inputs["encoder"],
                        "fold": fold, "seed": seed, "few_shot": frac, **meta}
                save_downstream_checkpoint(out / name / ckpt, tensors, meta)
                if run.get("history"):
                    plot_fit(run["history"], out / name / CURVES, run.get("monitor"), run.get("best_epoch"))
                write_json(done, run)
                runs.append(run)
    slim = [{k: v for k, v in r.items() if k != "history"} for r in runs]
    extra = {"mode": mode, "config": cfg.to_dict(), "task": task.to_dict()}
    return write_results(out, f"{title}: {cfg.dataset} / {task.name}", task.kind, slim, extra, notes)
