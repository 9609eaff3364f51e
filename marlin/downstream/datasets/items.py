"""Preprocessed items with their labels in ``meta.json`` (``labels: {task: value}``), as written by
`marlin preprocess` / `marlin synth`: a task value is a 0/1 list (multi-label), a class id or name
(multi-class) or 0/1 / true/false (binary, when every value is).

Splits: ``train.txt`` / ``val.txt`` / ``test.txt`` in the root (item paths relative to it), else sorted 80/10/10.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...data.layout import item_video, list_items
from ..tasks import Task
from .base import Dataset, DatasetError, Sample, split_lists, video_key


def load_items(root, task: str, kind: str | None = None, labels=None, split_dir=None) -> Dataset:
    """Samples of the items below ``root`` that carry ``labels[task]``; ``labels`` names the labels / classes."""
    root = Path(root)
    if not task:
        raise ValueError("the items adapter needs a task: a key of the items' meta.json labels")
    items = {it.root.relative_to(root).as_posix() if it.root != root else it.root.name: it for it in list_items(root)}
    values = {name: it.labels[task] for name, it in items.items() if task in it.labels}
    if not values:
        raise DatasetError(root, f"no item has the label {task!r} in its meta.json")
    sample = next(iter(values.values()))
    if kind is None:
        if isinstance(sample, list):
            kind = "multilabel"
        elif all(v in (0, 1, True, False) for v in values.values()):
            kind = "binary"
        else:
            kind = "multiclass"
    if kind == "multilabel":
        width = len(sample)
        names = tuple(labels) if labels else tuple(str(i) for i in range(width))
        targets = {}
        for n, v in values.items():
            arr = np.asarray(v, dtype=np.int64)
            if arr.shape != (len(names),) or not np.isin(arr, (0, 1)).all():
                raise DatasetError(items[n].root / "meta.json", f"labels.{task} must be {len(names)} values of 0/1")
            targets[n] = arr
    else:
        if labels:
            names = tuple(str(c) for c in labels)
        elif all(isinstance(v, (int, bool)) for v in values.values()):
            names = tuple(str(i) for i in range(max(2, max(int(v) for v in values.values()) + 1)))
        else:
            names = tuple(sorted({str(v) for v in values.values()}))
        targets = {}
        for n, v in values.items():
            key = str(int(v)) if isinstance(v, (int, bool)) else str(v)
            if key not in names:
                raise DatasetError(items[n].root / "meta.json", f"labels.{task} = {v!r} is not one of {list(names)}")
            targets[n] = names.index(key)
    ds = Dataset("items", Task(task, kind, names))
    for split, entries in split_lists(Path(split_dir) if split_dir else root, sorted(values)).items():
        ds.splits[split] = []
        for name in entries:
            if name not in targets:
                ds.skipped.append(f"{name}: no item with labels.{task} below {root}")
                continue
            it = items[name]
            video = item_video(it.root)
            ds.splits[split].append(Sample(video_key(video, root), video, targets[name]))
    return ds
