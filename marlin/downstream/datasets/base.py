"""Common pieces of the dataset adapters: samples, splits, and finding a video by name."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...data.layout import is_item, item_video
from ...video.io import VIDEO_EXTENSIONS
from ..tasks import Task

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Sample:
    """One labelled video. ``key``: unique id, also the feature-cache name (``<features>/<key>.npy``);
    ``source``: a video file, a preprocessed item directory or a directory of frames;
    ``start``/``end``: a segment of the source in seconds (CMU-MOSEI), else None."""

    key: str
    source: Path
    target: object
    start: float | None = None
    end: float | None = None


@dataclass
class Dataset:
    """Samples of each split for one task (one fold for datasets with folds)."""

    name: str
    task: Task
    splits: dict[str, list[Sample]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # "name: problem" of entries left out

    def targets(self, split: str) -> np.ndarray:
        return np.stack([np.asarray(s.target) for s in self.splits[split]]) if self.splits[split] else np.zeros(0)

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return f"{self.name} / {self.task.name} ({self.task.kind}, {self.task.num_outputs} outputs): {sizes}"


def video_key(path: Path, root: Path) -> str:
    """Feature-cache key of a video: its path below ``root`` without extension (as `marlin extract` names it)."""
    rel = Path(path).relative_to(root)
    return rel.with_suffix("").as_posix() if rel.suffix.lower() in VIDEO_EXTENSIONS else rel.as_posix()


def find_video(name: str, dirs: list[Path]) -> Path | None:
    """A video called ``name`` in one of ``dirs``: ``name`` itself if it has an extension, ``name.<ext>``,
    a preprocessed item directory ``name/`` (its clip.mp4 or frames/) or a directory of frames ``name/``
    (for ``a.mp4`` also ``a/``: e.g. MAFW's frame folders)."""
    found = _find_video(name, dirs)
    stem = Path(name).with_suffix("").as_posix()
    if found is None and Path(name).suffix.lower() in VIDEO_EXTENSIONS:
        found = _find_video(stem, dirs)
    return found


def _find_video(name: str, dirs: list[Path]) -> Path | None:
    for d in dirs:
        base = d / name
        if base.suffix.lower() in VIDEO_EXTENSIONS and base.is_file():
            return base
        for ext in VIDEO_EXTENSIONS:
            p = base.parent / (base.name + ext)
            if p.is_file():
                return p
        if base.is_dir():
            if is_item(base):
                return item_video(base)
            if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in base.iterdir()):
                return base
            for ext in VIDEO_EXTENSIONS:  # e.g. an item written without meta.json yet: skip
                if (base / ("clip" + ext)).is_file():
                    return base / ("clip" + ext)
    return None


def read_json(path: Path, what: str):
    """Parsed JSON of `path`; a missing file or invalid JSON raises DatasetError naming the file."""
    import json

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DatasetError(path, f"{what} does not exist") from None
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"invalid JSON ({e})") from None


def read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a split list."""
    try:
        lines = Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise DatasetError(path, "split list does not exist") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def sorted_split(names: list[str], fractions=(0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Deterministic split of the sorted names: first 80 % train, next 10 % val, the rest test."""
    names = sorted(names)
    n_train = int(round(fractions[0] * len(names)))
    n_val = int(round(fractions[1] * len(names)))
    return {"train": names[:n_train], "val": names[n_train:n_train + n_val], "test": names[n_train + n_val:]}


def split_lists(root: Path, names: list[str], list_names=("train.txt", "val.txt", "test.txt")) -> dict[str, list[str]]:
    """Split lists from ``root/train.txt`` etc. when present (entries may carry an extension), else the
    sorted 80/10/10 split."""
    files = [root / n for n in list_names]
    if not any(f.exists() for f in files):
        return sorted_split(names)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise DatasetError(root, f"some split lists are missing: {missing}")
    return {split: [Path(x).with_suffix("").as_posix() if Path(x).suffix.lower() in VIDEO_EXTENSIONS else x
                    for x in read_list(f)] for split, f in zip(SPLITS, files)}
