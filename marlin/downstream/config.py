"""Run configurations of `marlin probe` / `marlin finetune` (YAML, one per dataset and task shipped in
``marlin/configs/downstream/``); defaults below, command-line overrides with ``key.sub=value``."""
from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

DEFAULTS = {
    "dataset": None,  # celebvhq | mosei | ffpp | dfew | ferv39k | mafw | csv
    "root": None,  # dataset root folder
    "task": None,  # e.g. appearance / action (celebvhq), emotion / sentiment7 / sentiment2 (mosei)
    "dataset_options": {},  # passed to the adapter (compression, csv, videos, labels, folds, ...)
    "folds": None,  # list of fold numbers, or None for every fold of the dataset
    "encoder": {"model": "marlin_vit_base_ytf", "weights": None},  # weights: a file, or "random"
    "features": None,  # LP feature cache (<features>/<key>.npy), default <out>/features
    "crop_face": False,  # raw videos: crop faces while extracting (LP only; preprocess for FT)
    "windows": {"sample_rate": 2, "stride": 16},
    "reduction": "mean",  # LP temporal reduction over windows: mean | max
    "few_shot": [1.0],  # fractions of the training labels
    "seeds": [0],
    "train": {},  # TrainConfig fields (solver sgd, and fine-tuning)
    "solver": "sgd",  # LP: sgd (the paper's LP: Adam, early stopping) | logistic (L-BFGS, L2 penalty chosen on val)
    "batch_size_eval": 8,  # clips per encoder forward when extracting / evaluating
    "workers": 4,  # fine-tuning: threads decoding the training clips of a batch
    "precision": "32",  # fine-tuning: "32" or "bf16" (bfloat16 autocast of the encoder; about 5x faster on an H100)
    "device": "auto",  # fine-tuning: auto (cuda when available) | cpu | cuda[:k]
    "out": None,
    "paper": None,  # results.md: the paper's values {table, source, rows: {<model>: {row, metrics, few_shot}}}
}


SOLVERS = ("sgd", "logistic")


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    folder = resources.files("marlin") / "configs" / "downstream"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _find(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = resources.files("marlin") / "configs" / "downstream" / f"{Path(name_or_path).stem}.yaml"
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"{name_or_path}: no such config file, and not a shipped config "
                            f"({', '.join(shipped_configs())})")


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_key(cfg: dict, assignment: str) -> None:
    """Apply ``a.b=value`` (value parsed as YAML) in place."""
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    node, parts = cfg, key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {part} is not a mapping")
    node[parts[-1]] = yaml.safe_load(value)


def load_run_config(name_or_path: str | dict, overrides: list[str] = (), values: dict | None = None) -> dict:
    """Config with defaults filled in; ``name_or_path`` is a YAML file, a shipped config name or a dict.

    ``overrides``: ``a.b=value`` strings (YAML values); ``values``: ``{"a.b": python value}`` set as is."""
    if isinstance(name_or_path, dict):
        data, source = name_or_path, "<dict>"
    else:
        path = _find(name_or_path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML ({e})") from None
        source = str(path)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"{source}: unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = _merge(DEFAULTS, data)
    for a in overrides:
        set_key(cfg, a)
    for key, value in (values or {}).items():
        node, parts = cfg, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    for key in ("dataset", "root"):
        if not cfg[key]:
            raise ValueError(f"{source}: '{key}' is required")
    if cfg["solver"] not in SOLVERS:
        raise ValueError(f"{source}: solver must be one of {SOLVERS}, got {cfg['solver']!r}")
    if not isinstance(cfg["few_shot"], list):
        cfg["few_shot"] = [cfg["few_shot"]]
    if not isinstance(cfg["seeds"], list):
        cfg["seeds"] = [cfg["seeds"]]
    cfg["source"] = source
    return cfg
