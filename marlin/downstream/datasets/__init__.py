"""Dataset adapters: each returns a `Dataset` (task + train / val / test samples) from the published layout."""
from __future__ import annotations

from .base import Dataset, DatasetError, Sample
from .celebvhq import load_celebvhq
from .expression import SPECS as EXPRESSION_SPECS
from .expression import load_expression
from .ffpp import load_ffpp
from .generic import load_csv
from .items import load_items
from .mosei import load_mosei

DATASETS = ("celebvhq", "mosei", "ffpp", "dfew", "ferv39k", "mafw", "csv", "items")


def load_dataset(name: str, root, task: str | None = None, fold: int = 1, seed: int = 0, **options) -> Dataset:
    """The ``task`` samples of dataset ``name`` at ``root`` (fold for DFEW / FERV39k / MAFW).

    ``options`` go to the adapter (e.g. compression for ffpp, csv / kind for csv, labels for mosei).
    """
    if name == "celebvhq":
        return load_celebvhq(root, task or "appearance", **options)
    if name == "mosei":
        return load_mosei(root, task or "emotion", **options)
    if name == "ffpp":
        return load_ffpp(root, task or "real_fake", **options)
    if name in EXPRESSION_SPECS:
        return load_expression(name, root, fold=fold, seed=seed, **options)
    if name == "items":
        return load_items(root, task, **options)
    if name == "csv":
        from pathlib import Path

        csv_path = Path(options.pop("csv", "labels.csv"))
        csv_path = csv_path if csv_path.is_absolute() else Path(root) / csv_path
        return load_csv(csv_path, task=task, root=options.pop("video_root", root), **options)
    raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")


def num_folds(name: str) -> int:
    return EXPRESSION_SPECS[name].folds if name in EXPRESSION_SPECS else 1


__all__ = ["Dataset", "DatasetError", "Sample", "load_dataset", "num_folds", "DATASETS", "load_celebvhq",
           "load_mosei", "load_ffpp", "load_expression", "load_csv", "load_items"]
