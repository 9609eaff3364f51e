"""Model configurations: the official presets and any size from an official-layout pretraining YAML."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

_RELEASE = "https://github.com/ControlNet/MARLIN/releases/download/model_v1"


@dataclass(frozen=True)
class MarlinConfig:
    """Architecture of a MARLIN model (field names as the official `marlin_pytorch.config.MarlinConfig`)."""

    img_size: int = 224
    patch_size: int = 16
    n_frames: int = 16
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    norm_layer: str = "LayerNorm"
    init_values: float = 0.0
    tubelet_size: int = 2

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T', H', W'): 8 x 14 x 14 for the presets."""
        s = self.img_size // self.patch_size
        return self.n_frames // self.tubelet_size, s, s

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def patch_dim(self) -> int:
        """Raw pixels per tubelet: 3 * 2 * 16 * 16 = 1536 for the presets."""
        return 3 * self.tubelet_size * self.patch_size ** 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "<MarlinConfig>") -> "MarlinConfig":
        from ..config import from_dict

        return from_dict(cls, d, where)

    def __post_init__(self):
        """The geometry and the widths are checked here, once: every MarlinConfig in use is a valid one."""
        sizes = {"img_size": self.img_size, "patch_size": self.patch_size, "n_frames": self.n_frames,
                 "tubelet_size": self.tubelet_size}
        for name, size in sizes.items():
            if size < 1:
                raise ValueError(f"{name} must be at least 1, got {size}")
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.n_frames % self.tubelet_size:
            raise ValueError(f"n_frames {self.n_frames} is not a multiple of tubelet_size {self.tubelet_size}")
        for part in ("encoder", "decoder"):
            d, h = getattr(self, f"{part}_embed_dim"), getattr(self, f"{part}_num_heads")
            if d % h:
                raise ValueError(f"{part} embed_dim {d} is not divisible by num_heads {h}")
        if self.norm_layer != "LayerNorm":
            raise ValueError(f"only norm_layer 'LayerNorm' is supported, got {self.norm_layer!r}")

    def validate(self) -> "MarlinConfig":
        """The config itself: it was checked when made (`__post_init__`)."""
        return self


@dataclass(frozen=True)
class Preset:
    config: MarlinConfig
    full_url: str | None = None
    encoder_url: str | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    "marlin_vit_small_ytf": Preset(
        MarlinConfig(encoder_embed_dim=384, encoder_depth=12, encoder_num_heads=6,
                     decoder_embed_dim=192, decoder_depth=4, decoder_num_heads=3),
        f"{_RELEASE}/marlin_vit_small_ytf.full.pt", f"{_RELEASE}/marlin_vit_small_ytf.encoder.pt",
        "ViT-S/16, pretrained on YouTube Faces (official release)"),
    "marlin_vit_base_ytf": Preset(
        MarlinConfig(encoder_embed_dim=768, encoder_depth=12, encoder_num_heads=12,
                     decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6),
        f"{_RELEASE}/marlin_vit_base_ytf.full.pt", f"{_RELEASE}/marlin_vit_base_ytf.encoder.pt",
        "ViT-B/16, pretrained on YouTube Faces (official release)"),
    "marlin_vit_large_ytf": Preset(
        MarlinConfig(encoder_embed_dim=1024, encoder_depth=24, encoder_num_heads=16,
                     decoder_embed_dim=512, decoder_depth=12, decoder_num_heads=8),
        f"{_RELEASE}/marlin_vit_large_ytf.full.pt", f"{_RELEASE}/marlin_vit_large_ytf.encoder.pt",
        "ViT-L/16, pretrained on YouTube Faces (official release)"),
}


def config_from_yaml_dict(cfg: dict, source: str = "<dict>") -> MarlinConfig:
    """Architecture from a dict in the official pretraining-YAML layout (keys img_size, clip_frames, encoder: {...}),
    read through the one alias table of `marlin.config`. Every key is checked as pretraining checks it (an unknown
    or misspelt key is an error naming it, not ignored); our `trainer:` section is allowed and not looked at."""
    from ..config import from_official

    return MarlinConfig.from_dict(from_official(cfg, source).get("model", {}), source)


def read_yaml(path) -> dict:
    from ..config import read_yaml as read

    return read(path)


def resolve_config(name_or_yaml: "str | Path | MarlinConfig") -> MarlinConfig:
    """A preset name, a path to an official-layout YAML, or a MarlinConfig -> MarlinConfig."""
    if isinstance(name_or_yaml, MarlinConfig):
        return name_or_yaml
    key = str(name_or_yaml)
    if key in PRESETS:
        return PRESETS[key].config
    if key.endswith((".yaml", ".yml")) or Path(key).is_file():
        return config_from_yaml_dict(read_yaml(key), key)
    raise ValueError(f"unknown model {key!r}: not a preset ({', '.join(PRESETS)}) and not a YAML file")


def encoder_record(model_name, weights, seed: int = 0) -> dict:
    """What identifies an encoder's weights (the ``encoder`` of `marlin.extract.features_record`): the preset / YAML
    name, its resolved architecture and the SHA-256 of the weights file ("random" weights: the seed)."""
    from ..checkpoints import file_sha256

    config = resolve_config(model_name).to_dict() if model_name is not None else None  # ours: in the file
    if str(weights) == "random":
        return {"model": model_name, "config": config, "weights": "random", "seed": int(seed)}
    return {"model": model_name, "config": config, "weights_sha256": file_sha256(weights)}


def model_record(model) -> dict:
    """An `encoder_record` of an in-memory model: its architecture and a SHA-256 of its weights."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return {"model": None, "config": model.config.to_dict(), "weights_sha256": h.hexdigest()}
