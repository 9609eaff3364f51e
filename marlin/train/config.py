"""Pretraining settings: the official pretraining YAML (through the alias table of `marlin.config`) or our own
nested layout, plus a `trainer:` section of our own. Fields carry their command-line help."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as C
from ..masking import MaskSpec, MaskStrategy
from ..models.config import MarlinConfig
from ..precision import PRETRAIN_REQUESTS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "pretrain"


_help = C.setting
STRATEGIES_DIST = ("ddp", "fsdp")  # multi-process training strategies (Lightning)


@dataclass
class TrainerSettings:
    """Run settings (YAML `trainer:` section, CLI flags or `pretrain(...)` keywords; official train.py defaults)."""

    batch_size: int = _help("clips per device per micro-batch", default=16)
    max_epochs: int = _help("sets the schedule length when max_steps is not given", default=2000)
    max_steps: int | None = _help("stop after this many iterations (also sets the schedule length)", default=None)
    max_minutes: float | None = _help("stop after this many minutes of training", default=None)
    schedule_steps: int | None = _help("cosine length; default max_steps, else max_epochs x iterations per epoch",
                                       default=None)
    warmup_steps: int | None = _help("warm-up iterations (overrides learning_rate.warmup_epochs)", default=None)
    accumulate: int = _help("micro-batches per optimiser step", default=1)
    grad_clip: float = _help("max global gradient norm (0 = off)", default=0.0)
    norm_target: bool = _help("per-patch normalised pixel targets", default=False)
    part_weight: float = _help("loss weight of facial-feature pixels (brows, eyes, nose, lips); 1 = official",
                               default=1.0)
    num_workers: int = _help("data-loader workers per device", default=2)
    cache_mb: float = _help("decoded videos kept in memory per data worker, MiB (small datasets, many epochs)",
                            default=0)
    seed: int = _help("seed of weights, data order and masks", default=0)
    shuffle_buffer: int = _help("samples in each process's shuffle buffer when reading shards (`marlin shard`)",
                                default=1000)
    strategy: str = _help("several processes: ddp (weights replicated) or fsdp (FSDP2: the generator's weights, "
                          "gradients and optimiser states sharded over the processes)", default="ddp")
    val_every: int = _help("iterations between validations (and reconstruction PNGs)", default=500)
    val_batches: int = _help("validation batches per validation", default=2)
    ckpt_every: int = _help("iterations between resumable checkpoints", default=1000)
    log_every: int = _help("iterations per history.csv row", default=10)
    precision: str | None = _help("32-true, bf16-mixed, or auto (bf16-mixed where the hardware computes bf16 "
                                  "natively: Ampere and later GPUs, AVX512-BF16 / AMX CPUs; 32-true on V100 / T4); "
                                  "default: auto on GPUs, 32-true on CPUs", default=None)


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs besides data and output paths."""

    model: MarlinConfig
    name: str = _help("run / export name (official model_name)", default="marlin")
    mask_strategy: MaskStrategy = _help(f"masking: {', '.join(MaskStrategy)}", default=MaskStrategy.FASKING)
    mask_ratio: float = _help("fraction of masked tokens (official mask_percentage_target)", default=0.9)
    sample_rate: int = _help("take every n-th frame (official temporal_sample_rate)", default=2)
    adv_loss: bool = _help("adversarial (Wasserstein critic) term", default=True)
    adv_weight: float = _help("weight of the adversarial term", default=0.01)
    gp_weight: float = _help("gradient-penalty weight of the critic update", default=0.0)
    d_steps: int = _help("critic updates per iteration", default=1)
    g_steps: int = _help("generator updates per iteration", default=1)
    lr_base: float = _help("base learning rate, scaled by global batch / 256", default=1.5e-4)
    lr_warmup: float = _help("learning rate at the start of warm-up", default=1e-6)
    lr_min: float = _help("final learning rate of the cosine schedule", default=1e-5)
    warmup_epochs: int = _help("warm-up epochs (trainer.warmup_steps overrides)", default=40)
    optimizer: str = _help("AdamW or Adam", default="AdamW")
    betas: tuple[float, float] = _help("optimiser betas", default=(0.9, 0.95))
    eps: float = _help("optimiser epsilon", default=1e-8)
    weight_decay: float = _help("weight decay", default=0.0)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)

    @functools.cached_property
    def mask(self) -> MaskSpec:
        """The mask setting as one checked value, made once when the config is (`__post_init__`) and passed inward
        as it is. A config is not changed after it is made: `dataclasses.replace` makes (and checks) a new one."""
        return MaskSpec(self.mask_strategy, self.mask_ratio)

    def __post_init__(self):
        """Checked once, when made (by the config layer from YAML / flags / a dict, or by hand): every
        PretrainConfig in use is a valid one. The model geometry checked itself when it was made (`MarlinConfig`);
        the mask setting is checked by making `mask`."""
        self.mask_strategy = self.mask.strategy  # the typed value, also when made by hand from a name
        if self.optimizer not in ("AdamW", "Adam"):
            raise C.ConfigError(f"optimizer.type must be AdamW or Adam, got {self.optimizer!r}")
        if self.trainer.accumulate > 1 and self.d_steps != 1:
            raise C.ConfigError("gradient accumulation needs d_steps 1")
        if not self.trainer.part_weight > 0:
            raise C.ConfigError(f"trainer.part_weight must be positive, got {self.trainer.part_weight}")
        if self.trainer.strategy not in STRATEGIES_DIST:
            raise C.ConfigError(f"trainer.strategy must be one of {STRATEGIES_DIST}, got {self.trainer.strategy!r}")
        if self.trainer.precision is not None and str(self.trainer.precision) not in PRETRAIN_REQUESTS:
            raise C.ConfigError(f"precision {self.trainer.precision} is not supported: use "
                                f"{', '.join(PRETRAIN_REQUESTS)} (float16 would need loss scaling of the critic's "
                                f"and the generator's steps; bf16-true keeps no float32 weights)")
        if self.trainer.shuffle_buffer < 1:
            raise C.ConfigError(f"trainer.shuffle_buffer must be at least 1, got {self.trainer.shuffle_buffer}")
        if self.d_steps < 1 or self.g_steps < 1:
            raise C.ConfigError("d_steps and g_steps must be at least 1")

    def validate(self) -> "PretrainConfig":
        """The config itself: it was checked when made (`__post_init__`)."""
        return self

    def to_dict(self) -> dict:
        return C.to_dict(self)

    def to_official(self) -> dict:
        """The settings in the official pretraining-YAML layout (readable by `resolve_config`), plus `trainer:`."""
        data = C.to_dict(self)
        return {**C.to_official(data), "trainer": data["trainer"]}


def _find_config(source) -> Path:
    path = Path(source)
    if not path.suffix and (CONFIG_DIR / f"{source}.yaml").is_file():
        return CONFIG_DIR / f"{source}.yaml"
    if not path.is_file():
        shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"{source}: no such config file, and not a shipped config ({shipped})")
    return path


def pretrain_config(source, overrides=(), values: dict | None = None, **trainer) -> PretrainConfig:
    """A `PretrainConfig` from a YAML path, a shipped config name (e.g. "tiny_cpu", "marlin_vit_small"), a dict
    (official layout or ours) or a PretrainConfig. ``overrides``: "key=value" strings (e.g.
    "trainer.batch_size=4", "mask_ratio=0.75"); ``values``: {"key": value}; ``trainer`` keywords set
    `TrainerSettings` fields (None values are ignored). A PretrainConfig with nothing to change is returned as it
    is: it was checked when it was made."""
    values = dict(values or {})
    values.update({f"trainer.{key}": value for key, value in trainer.items() if value is not None})
    if isinstance(source, PretrainConfig):
        if not overrides and not values:
            return source
        data, where = C.to_dict(source), "<config>"
    elif isinstance(source, dict):
        data, where = source, "<dict>"
    else:
        path = _find_config(source)
        data, where = C.read_yaml(path), str(path)
    if C.is_official_layout(data):
        data = C.from_official(data, where)
    return C.load(PretrainConfig, data, overrides, values, where)  # checked once, as it is made
