"""Exports of a trained generator: our safetensors, the official `.encoder.pt` / `.full.pt`, and its YAML."""
from __future__ import annotations

from pathlib import Path

from ..models import Marlin
from .config import PretrainConfig


def official_yaml(cfg: PretrainConfig) -> dict:
    """The run's settings in the official pretraining-YAML layout (readable by `resolve_config`)."""
    return cfg.to_official()


def export_model(model: Marlin, cfg: PretrainConfig, out_dir, training: dict | None = None) -> dict[str, Path]:
    """Write NAME.safetensors, NAME.encoder.pt, NAME.full.pt and NAME.yaml under `out_dir`; returns the paths."""
    import yaml

    from ..atomic import write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"safetensors": out_dir / f"{cfg.name}.safetensors", "encoder_pt": out_dir / f"{cfg.name}.encoder.pt",
             "full_pt": out_dir / f"{cfg.name}.full.pt", "yaml": out_dir / f"{cfg.name}.yaml"}
    model.save(paths["safetensors"], training=training)
    model.export_official(paths["encoder_pt"], encoder_only=True)
    model.export_official(paths["full_pt"], encoder_only=False)
    write_text(paths["yaml"], yaml.safe_dump(official_yaml(cfg), sort_keys=False))
    return paths
