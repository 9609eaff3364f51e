"""Pretraining settings: the official pretraining YAML plus an optional `trainer:` section of our own."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..masking import STRATEGIES
from ..models.config import MarlinConfig, config_from_yaml_dict, read_yaml

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


@dataclass
class TrainerSettings:
    """Run settings (YAML `trainer:` section, CLI flags or `pretrain(...)` keywords; official train.py defaults)."""

    batch_size: int = 16            # per process
    max_epochs: int = 2000          # sets the schedule length when max_steps is not given
    max_steps: int | None = None    # optimiser iterations
    max_minutes: float | None = None
    schedule_steps: int | None = None  # cosine length; default max_steps, else max_epochs x iterations per epoch
    warmup_steps: int | None = None  # overrides learning_rate.warmup_epochs
    accumulate: int = 1
    grad_clip: float = 0.0          # max global norm, 0 = off
    norm_target: bool = False       # per-patch normalised pixel targets
    part_weight: float = 1.0        # loss weight of facial-feature pixels (brows, eyes, nose, lips); 1 = official
    num_workers: int = 2
    cache_mb: float = 0             # decoded videos kept in memory per data worker (small datasets, many epochs)
    seed: int = 0
    val_every: int = 500            # iterations between validations (and reconstruction pictures)
    val_batches: int = 2
    ckpt_every: int = 1000          # iterations between resumable checkpoints
    log_every: int = 10
    precision: str | None = None    # None: bf16-mixed on GPUs, 32-true on CPUs; "auto": bf16 where native


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs besides data and output paths."""

    model: MarlinConfig
    name: str = "marlin"
    mask_strategy: str = "fasking"
    mask_ratio: float = 0.9
    sample_rate: int = 2
    adv_loss: bool = True
    adv_weight: float = 0.01
    gp_weight: float = 0.0
    d_steps: int = 1
    g_steps: int = 1
    lr_base: float = 1.5e-4
    lr_warmup: float = 1e-6
    lr_min: float = 1e-5
    warmup_epochs: int = 40
    optimizer: str = "AdamW"
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    trainer: TrainerSettings = field(default_factory=TrainerSettings)

    def validate(self) -> "PretrainConfig":
        if self.mask_strategy not in STRATEGIES:
            raise ValueError(f"mask_strategy must be one of {STRATEGIES}, got {self.mask_strategy!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_percentage_target must be in [0, 1), got {self.mask_ratio}")
        if self.optimizer not in ("AdamW", "Adam"):
            raise ValueError(f"optimizer.type must be AdamW or Adam, got {self.optimizer!r}")
        if self.trainer.accumulate > 1 and self.d_steps != 1:
            raise ValueError("gradient accumulation needs d_steps 1")
        if not self.trainer.part_weight > 0:
            raise ValueError(f"trainer.part_weight must be positive, got {self.trainer.part_weight}")
        if self.d_steps < 1 or self.g_steps < 1:
            raise ValueError("d_steps and g_steps must be at least 1")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


def _section(cfg: dict, key: str) -> dict:
    v = cfg.get(key) or {}
    if not isinstance(v, dict):
        raise ValueError(f"config key {key!r} must be a mapping")
    return v


def pretrain_config(source, **overrides) -> PretrainConfig:
    """A `PretrainConfig` from a YAML path, a shipped config name (e.g. "tiny_cpu", "marlin_vit_small") or a dict
    in the official layout. `overrides` set `TrainerSettings` fields (None values are ignored)."""
    if isinstance(source, PretrainConfig):
        cfg, where = None, "<config>"
        out = dataclasses.replace(source, trainer=dataclasses.replace(source.trainer))
    else:
        if isinstance(source, dict):
            cfg, where = source, "<dict>"
        else:
            path = Path(source)
            if not path.suffix and (CONFIG_DIR / f"{source}.yaml").is_file():
                path = CONFIG_DIR / f"{source}.yaml"
            elif not path.is_file():
                shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
                raise FileNotFoundError(f"{source}: no such config file, and not a shipped config ({shipped})")
            cfg, where = read_yaml(path), str(path)
        lr, opt = _section(cfg, "learning_rate"), _section(cfg, "optimizer")
        tr = _section(cfg, "trainer")
        names = {f.name for f in dataclasses.fields(TrainerSettings)}
        unknown = set(tr) - names
        if unknown:
            raise ValueError(f"{where}: unknown trainer settings {sorted(unknown)}; known: {sorted(names)}")
        out = PretrainConfig(
            model=config_from_yaml_dict(cfg, where), name=str(cfg.get("model_name", "marlin")),
            mask_strategy=str(cfg.get("mask_strategy", "fasking")),
            mask_ratio=float(cfg.get("mask_percentage_target", 0.9)),
            sample_rate=int(cfg.get("temporal_sample_rate", 2)), adv_loss=bool(cfg.get("adv_loss", True)),
            adv_weight=float(cfg.get("adv_weight", 0.01)), gp_weight=float(cfg.get("gp_weight", 0.0)),
            d_steps=int(cfg.get("d_steps", 1)), g_steps=int(cfg.get("g_steps", 1)),
            lr_base=float(lr.get("base", 1.5e-4)), lr_warmup=float(lr.get("warmup", 1e-6)),
            lr_min=float(lr.get("min", 1e-5)), warmup_epochs=int(lr.get("warmup_epochs", 40)),
            optimizer=str(opt.get("type", "AdamW")), betas=tuple(float(b) for b in opt.get("betas", (0.9, 0.95))),
            eps=float(opt.get("eps", 1e-8)), weight_decay=float(cfg.get("weight_decay", 0.0)),
            trainer=TrainerSettings(**tr))
    for k, v in overrides.items():
        if v is None:
            continue
        if not hasattr(out.trainer, k):
            raise ValueError(f"unknown trainer setting {k!r}")
        setattr(out.trainer, k, v)
    return out.validate()
