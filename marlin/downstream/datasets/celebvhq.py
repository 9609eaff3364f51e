"""CelebV-HQ: ``celebvhq_info.json`` attributes (appearance: 40 labels, action: 35 labels, multi-label;
emotion: single-label multi-class where ``sep_flag`` is false), cropped videos, split lists.

Layout::

    ROOT/celebvhq_info.json   {"meta_info": {"appearance_mapping": [...], "action_mapping": [...],
                                             "emotion_mapping": [...]},
                               "clips": {"<id>": {"attributes": {"appearance": [0/1 x 40], "action": [0/1 x 35],
                                                                "emotion": {"sep_flag": false, "labels": "happy"}}}}}
    ROOT/cropped/<id>.mp4      face crops (official MARLIN layout),
                               or preprocessed items ROOT/{cropped,preprocessed,.}/<id>/
    ROOT/train.txt, val.txt, test.txt   clip ids (optional: else a sorted 80/10/10 split of the ids)

Label names come from the info file's ``meta_info.<task>_mapping`` lists (the order of the 0/1 vectors, and the
emotion class names). The emotion task needs ``emotion_mapping``; an info file without it is refused, unless
the class names are given with the ``emotions`` option (then every clip's label must be one of them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..tasks import Task
from .base import Dataset, DatasetError, Sample, find_video, read_json, split_lists, video_key

TASKS = ("appearance", "action", "emotion")


def _read_info(path: Path) -> dict:
    info = read_json(path, "CelebV-HQ info file")
    if not isinstance(info, dict) or "clips" not in info or "meta_info" not in info:
        raise DatasetError(path, "expected the keys 'meta_info' and 'clips' of celebvhq_info.json")
    return info


def _target(attrs: dict, task: str, labels: tuple[str, ...]):
    """Target of one clip, or None when the clip has no single label for the task (ValueError: a bad label)."""
    if task == "emotion":
        emo = attrs.get("emotion")
        if not isinstance(emo, dict) or emo.get("sep_flag", False):
            return None  # several emotions over time: no single label
        value = emo.get("labels")
        if isinstance(value, list):
            value = value[0] if len(value) == 1 else None
        if isinstance(value, str):
            if value not in labels:
                raise ValueError(f"emotion {value!r} is not one of {list(labels)}")
            return labels.index(value)
        if value is None:
            return None
        if not 0 <= int(value) < len(labels):
            raise ValueError(f"emotion id {value} is outside 0..{len(labels) - 1}")
        return int(value)
    vec = np.asarray(attrs[task], dtype=np.int64)
    if vec.shape != (len(labels),) or not np.isin(vec, (0, 1)).all():
        raise ValueError(f"{task} must be {len(labels)} values of 0/1, got shape {vec.shape}")
    return vec


def load_celebvhq(root, task: str = "appearance", info: str = "celebvhq_info.json",
                  videos=("cropped", "preprocessed", "."), split_dir: str | None = None, emotions=None) -> Dataset:
    """CelebV-HQ samples for ``task`` (appearance | action | emotion); ``emotions``: the emotion class names
    when the info file has no ``meta_info.emotion_mapping``."""
    root = Path(root)
    if task not in TASKS:
        raise ValueError(f"CelebV-HQ task must be one of {TASKS}, got {task!r}")
    info_path = root / info
    data = _read_info(info_path)
    mapping = data["meta_info"].get(f"{task}_mapping")
    if task == "emotion" and emotions:
        mapping = list(emotions)
    if not mapping and task == "emotion":
        raise DatasetError(info_path, "meta_info has no 'emotion_mapping': the emotion task takes its class names "
                                      "(and the meaning of integer labels) from that list of the official "
                                      "celebvhq_info.json; use a release that has it, or name the classes with "
                                      "dataset_options.emotions: [...]")
    if not mapping:
        raise DatasetError(info_path, f"meta_info has no '{task}_mapping' list of label names")
    labels = tuple(str(x) for x in mapping)
    kind = "multiclass" if task == "emotion" else "multilabel"
    clips = data["clips"]
    dirs = [root / v for v in videos]
    lists = split_lists(root / split_dir if split_dir else root, sorted(clips))
    ds = Dataset("celebvhq", Task(task, kind, labels))
    for split, names in lists.items():
        ds.splits[split] = []
        for name in names:
            if name not in clips:
                ds.skipped.append(f"{name}: not in {info_path}")
                continue
            try:
                target = _target(clips[name].get("attributes", {}), task, labels)
            except (KeyError, ValueError, TypeError) as e:
                ds.skipped.append(f"{name}: bad {task} labels in {info_path} ({e})")
                continue
            if target is None:
                ds.skipped.append(f"{name}: no single {task} label")
                continue
            video = find_video(name, dirs)
            if video is None:
                ds.skipped.append(f"{name}: no video found in {', '.join(map(str, dirs))}")
                continue
            base = next(d for d in dirs if video.is_relative_to(d))
            ds.splits[split].append(Sample(video_key(video, base), video, target))
    return ds
