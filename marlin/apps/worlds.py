"""The synthetic talking-face world as a probe benchmark, shared by `marlin demo` and `marlin ablate`: its two
worlds (one to pretrain and fit probes on, one to score on), its tasks as `marlin.downstream` datasets (the `items`
adapter) and the metric that judges each task.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..downstream.probes import METRIC


def task_metric(task: str) -> str:
    """The metric key (of `compute_metrics`) that judges a synthetic task."""
    from ..synth import TASKS

    return METRIC[TASKS[task][0]]


def task_datasets(data_dir, test_dir=None, test_items: int = 0) -> dict:
    """{task: `marlin.downstream` Dataset} of every synthetic task, read by the `items` adapter from the items'
    meta.json and the world's split lists; with `test_dir`, the test split is items 0..test_items-1 of that
    world instead (all of its splits). Each task is judged by `task_metric` (its validation monitor too)."""
    from ..downstream.datasets.items import load_items
    from ..synth import TASKS, item_id

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


def synthetic_worlds(out: Path, num_items: int, test_items: int, frames: int, size: int, seed: int = 0,
                     workers: int = 1, progress: bool = True, say=print) -> tuple[Path, Path | None]:
    """The demo's two synthetic worlds under `out` (generated or resumed, `marlin.synth.generate_dataset`): OUT/data,
    `num_items` clips of world `seed` (pretraining and the probes' train / val splits), and OUT/data_test,
    `test_items` clips of world `seed + 1` to score on (None when `test_items` is 0). Returns both folders."""
    from ..synth import generate_dataset

    data_dir, test_dir = out / "data", (out / "data_test" if test_items else None)
    say(f"1/4 synthetic world: {num_items} clips of {frames} frames at {size}px -> {data_dir}")
    generate_dataset(data_dir, num_items, frames=frames, size=size, seed=seed, workers=workers, progress=progress)
    if test_dir is not None:  # a second world (another seed): more test clips, and identities pretraining never saw
        say(f"    test world: {test_items} clips, seed {seed + 1} -> {test_dir}")
        generate_dataset(test_dir, test_items, frames=frames, size=size, seed=seed + 1, workers=workers,
                         progress=progress)
    return data_dir, test_dir
