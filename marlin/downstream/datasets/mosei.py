"""CMU-MOSEI: segment labels from the SDK's ``CMU_MOSEI_Labels.csd`` (HDF5) or an equivalent CSV; segments
cut from the full videos by their intervals; the SDK's standard folds.

Layout::

    ROOT/CMU_MOSEI_Labels.csd    HDF5: <name>/data/<video>/features (n, 7) [sentiment, happy, sad, anger,
                                  surprise, disgust, fear], <name>/data/<video>/intervals (n, 2) seconds
      or ROOT/mosei_labels.csv   video,start,end,sentiment,happy,sad,anger,surprise,disgust,fear[,split]
    ROOT/Raw/Videos/Full/Combined/<video>.mp4   (or a preprocessed item <video>/clip.mp4)
    folds: ROOT/folds.json {"train": [video ids], "valid": [...], "test": [...]}, or the SDK's
           ROOT/cmu_mosei_std_folds.py (read as data, never executed), or ROOT/train.txt, valid.txt (or
           val.txt), test.txt; else the SDK's standard folds when `mmsdk` is installed; else a sorted
           80/10/10 split of the video ids (a video never spans two splits).

Tasks: ``emotion`` (multi-label, 6 emotions present when intensity > 0), ``sentiment7`` (multi-class, the
CMU-MultimodalSDK's ``cmumosei_round`` bins: < -2 -> -3, [-2, -1) -> -2, [-1, 0) -> -1, 0 -> 0, (0, 1] -> 1,
(1, 2] -> 2, > 2 -> 3), ``sentiment2`` (binary; the SDK's two conventions: ``binary: non-negative`` (default,
< 0 vs >= 0) or ``binary: positive`` (< 0 vs > 0, segments scored exactly 0 left out)).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..tasks import Task
from .base import Dataset, DatasetError, Sample, find_video, read_json, read_list, sorted_split

EMOTIONS = ("happy", "sad", "anger", "surprise", "disgust", "fear")
TASKS = ("emotion", "sentiment7", "sentiment2")
VIDEO_DIR = "Raw/Videos/Full/Combined"


def read_csd(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video -> (features (n, 7), intervals (n, 2)) from a computational-sequence .csd file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except FileNotFoundError:
        raise DatasetError(path, "label file does not exist") from None
    except OSError as e:
        raise DatasetError(path, f"not a readable HDF5 .csd file ({e})") from None
    with f:
        groups = [g for g in f.values() if isinstance(g, h5py.Group) and "data" in g]
        if not groups:
            raise DatasetError(path, "no computational sequence (a group with 'data') in this .csd file")
        out = {}
        for video, g in groups[0]["data"].items():
            if "features" not in g or "intervals" not in g:
                raise DatasetError(path, f"{video}: missing 'features' or 'intervals'")
            feats, inter = np.asarray(g["features"], np.float64), np.asarray(g["intervals"], np.float64)
            if feats.ndim != 2 or feats.shape[1] != 7 or inter.shape != (len(feats), 2):
                raise DatasetError(path, f"{video}: expected features (n, 7) and intervals (n, 2), got "
                                         f"{feats.shape} and {inter.shape}")
            out[str(video)] = (feats, inter)
    return out


def read_label_csv(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, str]]:
    """The CSV equivalent of the .csd file (+ video -> split when a split column is present)."""
    cols = ["video", "start", "end", "sentiment", *EMOTIONS]
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in cols if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(path, f"missing columns {missing}; expected {','.join(cols)}[,split]")
        rows = list(reader)
    data: dict[str, list] = {}
    splits = {}
    for i, r in enumerate(rows, start=2):
        try:
            values = [float(r[c]) for c in cols[3:]]
            interval = [float(r["start"]), float(r["end"])]
        except ValueError as e:
            raise DatasetError(path, f"line {i}: {e}") from None
        data.setdefault(r["video"], []).append((values, interval))
        if r.get("split"):
            if splits.setdefault(r["video"], r["split"]) != r["split"]:
                raise DatasetError(path, f"line {i}: video {r['video']} is in two splits (folds are per video)")
    return {v: (np.array([x[0] for x in s]), np.array([x[1] for x in s])) for v, s in data.items()}, splits


def _standard_folds() -> dict[str, list[str]] | None:
    try:
        from mmsdk.mmdatasdk.dataset.standard_datasets.CMU_MOSEI import cmu_mosei_std_folds as f
    except Exception:  # the SDK is optional
        return None
    return {"train": list(f.standard_train_fold), "val": list(f.standard_valid_fold),
            "test": list(f.standard_test_fold)}


def read_sdk_folds(path: Path) -> dict[str, list[str]]:
    """The SDK's ``cmu_mosei_std_folds.py`` read as data (its list literals; the file is never executed)."""
    import ast

    try:
        tree = ast.parse(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(path, "folds file does not exist") from None
    except SyntaxError as e:
        raise DatasetError(path, f"not a Python file of fold lists ({e})") from None
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            split = {"standard_train_fold": "train", "standard_valid_fold": "val",
                     "standard_test_fold": "test"}.get(name)
            if split:
                try:
                    out[split] = [str(v) for v in ast.literal_eval(node.value)]
                except ValueError:
                    raise DatasetError(path, f"{name} is not a literal list of video ids") from None
    if set(out) != {"train", "val", "test"}:
        raise DatasetError(path, "expected standard_train_fold, standard_valid_fold and standard_test_fold lists")
    return out


def _folds(root: Path, videos: list[str], csv_splits: dict[str, str], folds) -> dict[str, list[str]]:
    alias = {"train": "train", "valid": "val", "val": "val", "test": "test"}
    if folds is not None and Path(folds).suffix == ".py":
        return read_sdk_folds(Path(folds))
    if folds is not None:
        p = Path(folds)
        data = read_json(p, "folds file")
        return {alias[k]: [str(v) for v in vs] for k, vs in data.items() if k in alias}
    if csv_splits:
        out = {"train": [], "val": [], "test": []}
        for v, s in csv_splits.items():
            if s.lower() not in alias:
                raise DatasetError(root, f"unknown split {s!r} for video {v}")
            out[alias[s.lower()]].append(v)
        return out
    for name in ("folds.json", "cmu_mosei_std_folds.py"):
        if (root / name).is_file():
            return _folds(root, videos, {}, root / name)
    val_list = root / "valid.txt" if (root / "valid.txt").is_file() else root / "val.txt"
    if (root / "train.txt").is_file():
        return {"train": read_list(root / "train.txt"), "val": read_list(val_list),
                "test": read_list(root / "test.txt")}
    return _standard_folds() or sorted_split(videos)


BINARY_RULES = ("non-negative", "positive")


def cmumosei_round(score: float) -> int:
    """7-class sentiment of a score in [-3, 3], as the CMU-MultimodalSDK bins it (not round-to-nearest: the
    labels are averages of annotators' integers, so thirds are common): < -2 -> -3, [-2, -1) -> -2,
    [-1, 0) -> -1, 0 -> 0, (0, 1] -> 1, (1, 2] -> 2, > 2 -> 3."""
    if score < 0:
        return -3 if score < -2 else -2 if score < -1 else -1
    if score > 0:
        return 1 if score <= 1 else 2 if score <= 2 else 3
    return 0


def _target(row: np.ndarray, task: str, binary: str = "non-negative"):
    """Target of one segment, or None when the segment has no label under the task's rule."""
    if task == "emotion":
        return (row[1:7] > 0).astype(np.int64)
    if task == "sentiment7":
        return cmumosei_round(float(row[0])) + 3
    if binary == "positive" and row[0] == 0:
        return None  # neither negative nor positive
    return int(row[0] >= 0)


def load_mosei(root, task: str = "emotion", labels: str | None = None, videos: str = VIDEO_DIR,
               folds=None, binary: str = "non-negative") -> Dataset:
    """CMU-MOSEI segment samples for ``task`` (emotion | sentiment7 | sentiment2); ``binary`` is the
    sentiment2 rule: "non-negative" (< 0 vs >= 0) or "positive" (< 0 vs > 0, zero-scored segments left out)."""
    root = Path(root)
    if task not in TASKS:
        raise ValueError(f"CMU-MOSEI task must be one of {TASKS}, got {task!r}")
    if binary not in BINARY_RULES:
        raise ValueError(f"CMU-MOSEI binary rule must be one of {BINARY_RULES}, got {binary!r}")
    path = root / labels if labels else next((root / n for n in ("CMU_MOSEI_Labels.csd", "mosei_labels.csv")
                                              if (root / n).is_file()), root / "CMU_MOSEI_Labels.csd")
    data, csv_splits = (read_label_csv(path) if path.suffix.lower() == ".csv" else (read_csd(path), {}))
    kind, names = {"emotion": ("multilabel", EMOTIONS), "sentiment7": ("multiclass", tuple(map(str, range(-3, 4)))),
                   "sentiment2": ("binary", ("negative", binary))}[task]
    ds = Dataset("mosei", Task(task, kind, names))
    video_dirs = [root / videos, root]
    for split, ids in _folds(root, sorted(data), csv_splits, folds).items():
        ds.splits[split] = []
        for vid in ids:
            if vid not in data:
                ds.skipped.append(f"{vid}: in the {split} fold but has no labels in {path}")
                continue
            video = find_video(vid, video_dirs)
            if video is None:
                ds.skipped.append(f"{vid}: no video found in {video_dirs[0]}")
                continue
            feats, inter = data[vid]
            for i, (row, (start, end)) in enumerate(zip(feats, inter)):
                if not end > start:
                    ds.skipped.append(f"{vid}[{i}]: empty interval {start}..{end} in {path}")
                    continue
                target = _target(row, task, binary)
                if target is None:
                    ds.skipped.append(f"{vid}[{i}]: sentiment 0 is neither negative nor positive (binary: positive)")
                    continue
                ds.splits[split].append(Sample(f"{vid}/{i:04d}", video, target, float(start), float(end)))
    return ds
