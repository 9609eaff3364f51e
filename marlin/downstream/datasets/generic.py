"""Generic CSV labels: ``path,label`` (binary or multi-class; class names or ids) or
``path,label_1,...,label_k`` (multi-label 0/1), for any other dataset.

``path`` is a video file, a preprocessed item directory or a frame directory, relative to ``root``
(default: the CSV's folder). Splits, first found: a ``split`` column (train / val / test), split lists
``train.txt`` / ``val.txt`` / ``test.txt`` beside the CSV or in ``root`` (entries as in ``path``, extension
optional), else a deterministic sorted 80/10/10 split.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..tasks import Task
from .base import SPLITS, Dataset, DatasetError, Sample, find_video, split_lists, video_key

_PATH_HEADERS = ("path", "video", "file", "filename", "name", "id", "clip")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "dev": "val", "test": "test", "testing": "test"}


def _norm(p: str) -> str:
    p = p.strip().replace("\\", "/")
    while p.startswith("./"):
        p = p[2:]
    stem = Path(p)
    return stem.with_suffix("").as_posix() if stem.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm") else p


def _is_int(x: str) -> bool:
    try:
        int(x)
        return True
    except ValueError:
        return False


def read_label_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a label CSV; a header is required (first column path/video/file/name/id)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DatasetError(path, "label CSV does not exist") from None
    if not rows:
        raise DatasetError(path, "label CSV is empty")
    header = [c.strip() for c in rows[0]]
    if header[0].lower() not in _PATH_HEADERS or len(header) < 2:
        raise DatasetError(path, f"expected a header 'path,label' or 'path,label_1,...,label_k', got {header}")
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DatasetError(path, f"line {i} has {len(r)} fields, the header has {len(header)}")
    return header, [[c.strip() for c in r] for r in rows[1:]]


def load_csv(csv_path, task: str | None = None, kind: str | None = None, root=None, classes=None,
             split_dir=None) -> Dataset:
    """Samples of a generic label CSV; ``kind`` (binary | multiclass | multilabel) is inferred when None."""
    csv_path = Path(csv_path)
    header, rows = read_label_csv(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    split_col = next((i for i, h in enumerate(header) if h.lower() == "split"), None)
    label_cols = [i for i in range(1, len(header)) if i != split_col]
    values = [[r[i] for i in label_cols] for r in rows]
    if kind is None:
        if len(label_cols) > 1:
            kind = "multilabel"
        elif all(v[0] in ("0", "1") for v in values):
            kind = "binary"
        else:
            kind = "multiclass"
    if kind == "multilabel":
        labels = tuple(header[i] for i in label_cols)
        bad = next((v for v in values if any(x not in ("0", "1") for x in v)), None)
        if bad is not None:
            raise DatasetError(csv_path, f"multi-label columns must hold 0/1, got {bad}")
        targets = [np.array([int(x) for x in v], dtype=np.int64) for v in values]
    else:
        if len(label_cols) != 1:
            raise DatasetError(csv_path, f"a {kind} task needs one label column, got {len(label_cols)}")
        raw = [v[0] for v in values]
        if classes is not None:
            labels = tuple(str(c) for c in classes)
        elif all(_is_int(x) for x in raw):
            labels = tuple(str(i) for i in range(max(int(x) for x in raw) + 1)) if kind == "multiclass" \
                else ("0", "1")
        else:
            labels = tuple(sorted(set(raw)))
        index = {c: i for i, c in enumerate(labels)}
        targets = []
        for x in raw:
            if x in index:
                targets.append(index[x])
            elif _is_int(x) and 0 <= int(x) < len(labels):
                targets.append(int(x))
            else:
                raise DatasetError(csv_path, f"label {x!r} is not one of the classes {list(labels)}")
        if kind == "binary" and set(targets) - {0, 1}:
            raise DatasetError(csv_path, "a binary task needs exactly two classes")
    name = task or (header[label_cols[0]] if len(label_cols) == 1 else csv_path.stem)
    ds = Dataset("csv", Task(name, kind, labels if kind != "binary" or len(labels) == 2 else ("0", "1")))
    by_name = {_norm(r[0]): (r, t) for r, t in zip(rows, targets)}
    if split_col is not None:
        lists = {s: [] for s in SPLITS}
        for r in rows:
            s = _SPLIT_ALIASES.get(r[split_col].lower())
            if s is None:
                raise DatasetError(csv_path, f"unknown split {r[split_col]!r} (use train / val / test)")
            lists[s].append(_norm(r[0]))
    else:
        folders = [Path(split_dir)] if split_dir else [csv_path.parent, root]
        folder = next((d for d in folders if (d / "train.txt").is_file()), folders[0])
        lists = split_lists(folder, list(by_name))
    for split, names in lists.items():
        ds.splits[split] = []
        for n in names:
            entry = by_name.get(_norm(n))
            if entry is None:
                ds.skipped.append(f"{n}: in the {split} list but not in {csv_path}")
                continue
            video = find_video(entry[0][0], [root])
            if video is None:
                ds.skipped.append(f"{entry[0][0]}: no video found below {root}")
                continue
            ds.splits[split].append(Sample(video_key(video, root), video, entry[1]))
    return ds
