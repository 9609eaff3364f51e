"""Run configurations of `marlin probe` / `marlin finetune` / `marlin evaluate`: a typed section of the config
layer (`marlin.config`), read from a YAML file (one per dataset and task shipped in
``marlin/configs/downstream/``) with ``--set key.sub=value`` overrides."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .. import config as C
from ..precision import ANY_DEVICE, TRAINABLE, check_name

SOLVERS = ("sgd", "logistic")
REDUCTIONS = ("mean", "max")


_help = C.setting


@dataclass
class EncoderSpec:
    """Which frozen / initial encoder a run uses."""

    model: str | None = _help("preset name or official-layout YAML; null: the config stored in our .safetensors",
                              "marlin_vit_base_ytf")
    weights: str | None = _help("checkpoint file (official .encoder.pt / .full.pt / .ckpt, ours .safetensors), "
                                "or 'random' for a randomly initialised baseline")
    seed: int = _help("seed of 'random' weights", 0)


@dataclass
class Windows:
    """The official sliding windows over a video (`marlin.video.windows`)."""

    sample_rate: int = _help("take every n-th frame", 2)
    stride: int = _help("frames between window starts, in sampled frames", 16)


@dataclass
class RunConfig:
    """One downstream run: dataset task, encoder, feature windows, training and output."""

    dataset: str | None = _help("celebvhq | mosei | ffpp | dfew | ferv39k | mafw | csv | items")
    root: str | None = _help("dataset root folder")
    task: str | None = _help("e.g. appearance / action (celebvhq), emotion / sentiment7 / sentiment2 (mosei)")
    dataset_options: dict = _help("passed to the dataset adapter (compression, csv, videos, labels, ...)", factory=dict)
    folds: list[int] | None = _help("fold numbers, or null for every fold of the dataset")
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    features: str | None = _help("LP feature cache base folder (default <out>/features; see docs/downstream.md)")
    crop_face: bool = _help("raw videos: crop faces while extracting (LP only; preprocess for FT)", False)
    windows: Windows = field(default_factory=Windows)
    reduction: str = _help("LP reduction of the windows of a video: mean | max", "mean")
    few_shot: list[float | str] = _help("fractions of the training labels (0.1 or '10%')", factory=lambda: [1.0])
    seeds: list[int] = _help("seeds, one run each", factory=lambda: [0])
    train: dict = _help("TrainConfig fields (solver sgd, and fine-tuning)", factory=dict)
    solver: str = _help("LP: sgd (the paper's LP: Adam, early stopping) | logistic (L-BFGS, L2 chosen on val)",
                        "sgd")
    batch_size_eval: int | None = _help("clips per encoder call when extracting / evaluating (default: "
                                        "marlin.extract.clips_per_call, 8 on a GPU, one preset clip on a CPU)")
    workers: int = _help("fine-tuning: threads decoding the training clips of a batch", 4)
    precision: str = _help(f"fine-tuning: {' | '.join(TRAINABLE)} (bf16: bfloat16 autocast of the encoder)", "32")
    extract_precision: str = _help("LP feature extraction (the feature cache): '32' | 'bf16' (bfloat16 autocast, "
                                   "~3x faster on AMX CPUs) | 'auto' (bf16 where the extraction device computes it "
                                   "natively, else float32); the resolved one is part of the cache record", "32")
    device: str = _help("fine-tuning and LP feature extraction: auto (cuda when available) | cpu | cuda[:k]",
                        "auto")
    out: str | None = _help("output folder (default runs/<dataset>_<task>_<lp|ft>)")
    paper: dict | None = _help("results.md: the paper's values beside the measured ones, per encoder model: "
                               "{rows: {<model>: {table: 2, row: 'MARLIN (LP)', metrics: {acc: 'appearance acc'}, "
                               "few_shot: 1.0} or a list}} names cells of the shipped tables (marlin.paper); "
                               "{table, source, rows: {<model>: {row, metrics: {acc: 0.91}}}} gives values")

    def __post_init__(self):
        from .fewshot import parse_fraction
        from .report import check_paper
        from .train import TrainConfig

        self.few_shot = [parse_fraction(f) for f in self.few_shot]
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if self.batch_size_eval is not None and self.batch_size_eval < 1:
            raise ValueError(f"batch_size_eval must be at least 1, got {self.batch_size_eval}")
        check_name(self.precision, TRAINABLE, "precision")  # fine-tuning in float16 would need loss scaling
        check_name(self.extract_precision, ANY_DEVICE, "extract_precision")  # no float16 cache: GPU-only
        TrainConfig.from_dict(self.train)  # unknown or bad training options fail here, not after extraction
        check_paper(self.paper)  # a paper cell that the shipped tables lack fails here, not after training

    def to_dict(self) -> dict:
        return C.to_dict(self)


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


def load_run_config(source: str | dict | RunConfig, overrides=(), values: dict | None = None,
                    required=("dataset", "root")) -> RunConfig:
    """A `RunConfig` from a YAML file, a shipped config name, a dict or a RunConfig; ``overrides``: "a.b=value"
    strings (YAML values); ``values``: {"a.b": python value} set as is."""
    if isinstance(source, (dict, RunConfig)):
        data, where = source, "<dict>"
    else:
        path = _find(source)
        data, where = path, str(path)
    cfg = C.load(RunConfig, data, overrides, values, where)
    for key in required:
        if not getattr(cfg, key):
            raise C.ConfigError(f"{where}: '{key}' is required")
    return cfg
