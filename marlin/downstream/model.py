"""The downstream model: MARLIN encoder + linear head, its checkpoint (safetensors + JSON metadata) and the
encoder loading of a run config."""
from __future__ import annotations


import torch
from torch import Tensor, nn

from ..models import Marlin
from ..models.config import PRESETS, MarlinConfig
from ..models.encoder import MarlinEncoder
from ..precision import Precision
from .config import EncoderSpec, load_run_config


class VideoClassifier(nn.Module):
    """(B, 3, T, H, W) clip -> (B, K) logits: encoder features (mean over tokens, final norm) + linear head."""

    def __init__(self, encoder: MarlinEncoder, num_outputs: int, precision: Precision = Precision.FP32):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.embed_dim, num_outputs)
        self.precision = precision  # BF16: the encoder runs under bfloat16 autocast, the head in float32

    @property
    def config(self) -> MarlinConfig:
        return self.encoder.config

    def forward(self, x: Tensor) -> Tensor:
        with self.precision.autocast(x.device):  # the pooled features come out float32
            feats = self.encoder.extract_features(x, keep_seq=False)
        return self.head(feats)


def load_encoder(encoder_cfg: EncoderSpec) -> Marlin:
    """An encoder-only Marlin of an `EncoderSpec` (model: preset | YAML | None, weights: path | "random")."""
    model, weights = encoder_cfg.model, encoder_cfg.weights
    if weights is None:
        raise ValueError("encoder.weights is required: a checkpoint file (official .encoder.pt / .full.pt / "
                         ".ckpt, or ours .safetensors), or 'random' for a randomly initialised baseline")
    if str(weights) == "random":
        torch.manual_seed(encoder_cfg.seed)
        return Marlin.from_config(model, full_model=False).eval()
    return Marlin.from_file(model, weights, full_model=False).eval()


def save_downstream_checkpoint(path, tensors: dict[str, Tensor], meta: dict) -> None:
    """A downstream checkpoint (head or fine-tuned classifier) in the toolkit's container; ``meta`` is JSON-able."""
    from ..checkpoints import save_container

    save_container(path, tensors, "downstream", meta=meta)


def load_downstream_checkpoint(path) -> tuple[dict[str, Tensor], dict]:
    """(tensors, meta) of a downstream checkpoint written by `save_downstream_checkpoint` (or its older format)."""
    from ..checkpoints import load_container

    tensors, _, meta = load_container(path, "downstream")
    return tensors, meta


def probe_head(tensors: dict[str, Tensor], source, width: int | None = None) -> nn.Linear:
    """The linear head of a probe checkpoint (weight (C, D), bias (C,)) through the one state-dict check
    (`checkpoints.load_into`), D the encoder's ``width`` where known: a head that does not fit is one
    `CheckpointError` naming ``source``."""
    from ..checkpoints import CheckpointError, load_into

    weight = tensors.get("weight")
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise CheckpointError(f"{source}: not a linear probe head: 'weight' is missing or not a 2-D tensor")
    return load_into(nn.Linear(width or weight.shape[1], weight.shape[0]), tensors, source=source)


def classifier_from_checkpoint(path) -> tuple[VideoClassifier, dict]:
    """The model of a probe (encoder from its recorded weights + head) or fine-tuning checkpoint."""
    from ..checkpoints import load_into

    tensors, meta = load_downstream_checkpoint(path)
    if meta["mode"] == "finetune":
        cfg = MarlinConfig.from_dict(meta["marlin_config"])
        model = VideoClassifier(MarlinEncoder(cfg), int(tensors["head.weight"].shape[0]),
                                Precision.named(meta["run"].get("precision", "32")))  # the run it was trained in
        load_into(model, tensors, source=path, presets=PRESETS)
    else:
        encoder = load_encoder(load_run_config(meta["run"]).encoder).encoder
        head = probe_head(tensors, path, encoder.embed_dim)
        model = VideoClassifier(encoder, head.out_features)
        model.head = head
    return model.eval(), meta
