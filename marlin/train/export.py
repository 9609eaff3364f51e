"""Exports of a trained generator: our safetensors, the official `.encoder.pt` / `.full.pt`, and its YAML."""
from __future__ import annotations

from pathlib import Path

from ..models import Marlin
from .config import PretrainConfig


def official_yaml(cfg: PretrainConfig) -> dict:
    """The run's settings in the official pretraining-YAML layout (readable by `resolve_config`)."""
    m = cfg.model
    return {
        "model_name": cfg.name, "img_size": m.img_size, "patch_size": m.patch_size, "clip_frames": m.n_frames,
        "tubelet_size": m.tubelet_size, "mask_strategy": cfg.mask_strategy,
        "temporal_sample_rate": cfg.sample_rate, "mask_percentage_target": cfg.mask_ratio,
        "mlp_ratio": m.mlp_ratio, "qkv_bias": m.qkv_bias, "qk_scale": m.qk_scale, "drop_rate": m.drop_rate,
        "attn_drop_rate": m.attn_drop_rate, "norm_layer": m.norm_layer, "init_values": m.init_values,
        "weight_decay": cfg.weight_decay, "adv_loss": cfg.adv_loss, "adv_weight": cfg.adv_weight,
        "gp_weight": cfg.gp_weight, "d_steps": cfg.d_steps, "g_steps": cfg.g_steps,
        "learning_rate": {"base": cfg.lr_base, "warmup": cfg.lr_warmup, "min": cfg.lr_min,
                          "warmup_epochs": cfg.warmup_epochs},
        "optimizer": {"type": cfg.optimizer, "eps": cfg.eps, "betas": list(cfg.betas)},
        "encoder": {"embed_dim": m.encoder_embed_dim, "depth": m.encoder_depth, "num_heads": m.encoder_num_heads},
        "decoder": {"embed_dim": m.decoder_embed_dim, "depth": m.decoder_depth, "num_heads": m.decoder_num_heads},
    }


def export_model(model: Marlin, cfg: PretrainConfig, out_dir, training: dict | None = None) -> dict[str, Path]:
    """Write NAME.safetensors, NAME.encoder.pt, NAME.full.pt and NAME.yaml under `out_dir`; returns the paths."""
    import os

    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"safetensors": out_dir / f"{cfg.name}.safetensors", "encoder_pt": out_dir / f"{cfg.name}.encoder.pt",
             "full_pt": out_dir / f"{cfg.name}.full.pt", "yaml": out_dir / f"{cfg.name}.yaml"}
    model.save(paths["safetensors"], training=training)
    model.export_official(paths["encoder_pt"], encoder_only=True)
    model.export_official(paths["full_pt"], encoder_only=False)
    tmp = paths["yaml"].with_name(f".{paths['yaml'].name}.tmp")
    tmp.write_text(yaml.safe_dump(official_yaml(cfg), sort_keys=False))
    os.replace(tmp, paths["yaml"])
    return paths
