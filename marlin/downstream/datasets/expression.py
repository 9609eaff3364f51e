"""Dynamic facial expression datasets: DFEW, FERV39k, MAFW (multi-class; UAR and WAR).

Layouts (fold lists as distributed; a label is a class id or a class name)::

    DFEW     ROOT/EmoLabel_DataSplit/train(single-labeled)/set_<k>.csv, test(single-labeled)/set_<k>.csv
             ("video_name,label", ids 1..7 = happy sad neutral angry surprise disgust fear), k = 1..5;
             clips ROOT/Clip/clip_224x224/<00001>/*.jpg (or clip_224x224_16f/, or Clip/original/<00001>.mp4)
    FERV39k  ROOT/4_setups/All_scenes/train_All.csv, test_All.csv (a header, then "<path> <Class>", classes
             Angry Disgust Fear Happy Neutral Sad Surprise = ids 0..6); frames
             ROOT/2_ClipsforFaceCrop/<path>/*.jpg; one fold
    MAFW     ROOT/Train & Test Set/single/no_caption/set_<k>/train.txt, test.txt ("<clip> <label>", ids 1..11 =
             anger disgust fear happiness neutral sadness surprise contempt anxiety helplessness
             disappointment), k = 1..5; clips ROOT/data/clips/<clip>.mp4 (or ROOT/data/frames/<clip>/)

Every video may also be a preprocessed item directory. These datasets have no validation list: a seeded,
stratified ``val_fraction`` of each training fold is held out for model selection.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fewshot import few_shot_indices
from ..tasks import Task
from .base import Dataset, DatasetError, Sample, find_video, video_key


@dataclass(frozen=True)
class Spec:
    classes: tuple[str, ...]
    label_base: int  # the id of the first class in the list files
    folds: int
    lists: tuple[str, str]  # train / test list, "{k}" = fold number
    videos: tuple[str, ...]  # folders searched for a clip, first match wins
    name_format: str = "{}"


SPECS = {
    "dfew": Spec(("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"), 1, 5,
                 ("EmoLabel_DataSplit/train(single-labeled)/set_{k}.csv",
                  "EmoLabel_DataSplit/test(single-labeled)/set_{k}.csv"),
                 ("Clip/clip_224x224", "Clip/clip_224x224_16f", "Clip/original", "."), "{:05d}"),
    "ferv39k": Spec(("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"), 0, 1,
                    ("4_setups/All_scenes/train_All.csv", "4_setups/All_scenes/test_All.csv"),
                    ("2_ClipsforFaceCrop", ".")),
    "mafw": Spec(("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise", "contempt",
                  "anxiety", "helplessness", "disappointment"), 1, 5,
                 ("Train & Test Set/single/no_caption/set_{k}/train.txt",
                  "Train & Test Set/single/no_caption/set_{k}/test.txt"),
                 ("data/clips", "data/frames", ".")),
}


def read_fold_list(path: Path, spec: Spec) -> list[tuple[str, int]]:
    """(clip name, class index) pairs of a fold list (CSV or whitespace separated, optional header)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DatasetError(path, "fold list does not exist") from None
    lower = [c.lower() for c in spec.classes]
    out = []
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = next(csv.reader([line])) if "," in line else re.split(r"\s+", line)
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) < 2:
            raise DatasetError(path, f"line {i}: expected '<clip> <label>', got {line!r}")
        name, label = fields[0], fields[-1]
        if label.lstrip("-").isdigit():
            index = int(label) - spec.label_base
        elif label.lower() in lower:
            index = lower.index(label.lower())
        elif i == 1:
            continue  # header
        else:
            raise DatasetError(path, f"line {i}: unknown label {label!r}")
        if not 0 <= index < len(spec.classes):
            raise DatasetError(path, f"line {i}: label {label} is outside 1..{len(spec.classes)}"
                               if spec.label_base else f"line {i}: label {label} is outside 0..{len(spec.classes) - 1}")
        if name.isdigit():
            name = spec.name_format.format(int(name)) if "{:" in spec.name_format else name
        out.append((name, index))
    return out


def load_expression(name: str, root, fold: int = 1, val_fraction: float = 0.1, seed: int = 0,
                    videos=None) -> Dataset:
    """DFEW / FERV39k / MAFW samples of fold ``fold`` (1-based), validation held out from training."""
    if name not in SPECS:
        raise ValueError(f"unknown expression dataset {name!r}; choose one of {list(SPECS)}")
    spec, root = SPECS[name], Path(root)
    if not 1 <= fold <= spec.folds:
        raise ValueError(f"{name} has folds 1..{spec.folds}, got {fold}")
    dirs = [root / v for v in (videos or spec.videos)]
    ds = Dataset(name, Task("expression", "multiclass", spec.classes, monitor="uar"))
    parts = {}
    for split, pattern in zip(("train", "test"), spec.lists):
        samples = []
        for clip, target in read_fold_list(root / pattern.format(k=fold), spec):
            video = find_video(clip, dirs)
            if video is None:
                ds.skipped.append(f"{clip}: no video found in {', '.join(map(str, dirs))}")
                continue
            base = next(d for d in dirs if video.is_relative_to(d))
            samples.append(Sample(video_key(video, base), video, target))
        parts[split] = samples
    train = parts["train"]
    held = set(few_shot_indices(np.array([s.target for s in train]), val_fraction, "multiclass", seed).tolist()) \
        if train and val_fraction > 0 else set()
    ds.splits = {"train": [s for i, s in enumerate(train) if i not in held],
                 "val": [s for i, s in enumerate(train) if i in held], "test": parts["test"]}
    return ds
