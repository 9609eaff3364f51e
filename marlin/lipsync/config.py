"""Every lip-sync setting as a typed section (read through `marlin.config`: YAML, unknown keys are errors with a
suggestion, ``--set section.key=value`` overrides, command-line flags generated from the fields).

`LipsyncConfig` sections: ``data`` (`DataConfig`), ``syncnet`` (`SyncNetConfig`, the expert's network),
``generator`` (`GeneratorConfig`, the generator's network), ``syncnet_training`` (`SyncTrainConfig`),
``training`` (`GeneratorTrainConfig`), ``evaluation`` (`EvalConfig`). The network sections are what a checkpoint
stores to rebuild its network; the others describe a run.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config import setting as _h  # a section field with its help text
from .generator import GeneratorConfig
from .losses import DISC_WT, SYNC_WT
from .syncnet import SyncNetConfig


@dataclass(frozen=True)
class DataConfig:
    root: str | None = _h("LRS2 root: <split>.txt lists, videos in main/ (pretrain/ for the pretrain list)",
                          default=None)
    split: str = _h("LRS2 split list: pretrain, train, val or test", default="train")
    faces: str | None = _h("root of preprocessed faces <speaker>/<id>/ (face items or Wav2Lip jpg folders)",
                           default=None)
    videos: list[str] = _h("instead of root: cropped face videos with their audio (files, folders, txt lists)",
                           default_factory=list)
    workers: int = _h("processes that decode and batch the training data (0: none)", default=0)


@dataclass(frozen=True)
class SyncTrainConfig:
    steps: int = _h("total optimisation steps", default=10000)
    batch: int = _h("pairs per batch", default=16)
    lr: float = _h("Adam learning rate", default=1e-4)
    seed: int = _h("random seed of the initial weights and the batches", default=0)
    save_every: int = _h("save a checkpoint every this many steps", default=500)
    min_offset: int = _h("negatives shift the audio by at least this many frames", default=2)


@dataclass(frozen=True)
class GeneratorTrainConfig:
    steps: int = _h("total optimisation steps", default=10000)
    batch: int = _h("windows per batch", default=16)
    lr: float = _h("Adam learning rate (betas 0.5, 0.999 as Wav2Lip)", default=1e-4)
    seed: int = _h("random seed of the initial weights and the batches", default=0)
    save_every: int = _h("save a checkpoint every this many steps", default=500)
    sync_wt: float = _h("sync loss weight (Wav2Lip: 0.03)", default=SYNC_WT)
    disc_wt: float = _h("visual-quality GAN loss weight (Wav2Lip: 0.07)", default=DISC_WT)
    disc_width: int = _h("channels of our discriminator's first stage", default=32)
    encoder_lr: float | None = _h("learning rate of the vit/marlin face encoder (default lr; 0 freezes it)",
                                  default=None)
    sync_after: float | None = _h("keep the sync weight at 0 until the expert's loss on generated windows (mean "
                                  "of 20 steps) is below this (Wav2Lip: 0.75)", default=None)
    syncnet: str | None = _h("SyncNet expert (ours or Wav2Lip's lipsync_expert.pth), frozen; needed unless "
                             "sync_wt is 0", default=None)
    marlin: str | None = _h("MARLIN checkpoint for encoder marlin (official .pt/.ckpt or ours)", default=None)
    marlin_config: str | None = _h("preset name or YAML of the MARLIN architecture (vit: default "
                                   "marlin_vit_base_ytf; marlin: needed unless the checkpoint carries its config)",
                                   default=None)
    init: str | None = _h("generator weights to start from: Wav2Lip's wav2lip.pth / wav2lip_gan.pth (encoder "
                          "wav2lip) or a generator checkpoint of ours", default=None)
    disc_init: str | None = _h("discriminator weights to start from: Wav2Lip's visual_quality_disc.pth (encoder "
                               "wav2lip) or the discriminator of a generator checkpoint of ours", default=None)


@dataclass(frozen=True)
class EvalConfig:
    syncnet: str | None = _h("scoring SyncNet: syncnet_python's syncnet_v2.model (published scale), ours, or "
                             "Wav2Lip's lipsync_expert.pth", default=None)
    vshift: int = _h("offsets searched: -vshift..vshift frames", default=15)
    fid_real: list[str] = _h("real face videos to compute FID against", default_factory=list)
    fid_extractor: str = _h("FID feature extractor (inception, marlin)", default="inception")
    fid_weights: str | None = _h("weights file of the FID extractor (never downloaded)", default=None)
    fid_config: str | None = _h("for fid_extractor marlin: preset or YAML when the file has no config",
                                default=None)
    fid_size: int = _h("frames are resized to this size for FID", default=96)


@dataclass(frozen=True)
class LipsyncConfig:
    data: DataConfig = field(default_factory=DataConfig)
    syncnet: SyncNetConfig = field(default_factory=SyncNetConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    syncnet_training: SyncTrainConfig = field(default_factory=SyncTrainConfig)
    training: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)


def load_config(source=None, overrides=(), values=None) -> LipsyncConfig:
    """A `LipsyncConfig` from a YAML path / dict / None, then ``section.key=value`` overrides and
    {"section.key": value} values (see `marlin.config.load`)."""
    from ..config import load

    return load(LipsyncConfig, source, overrides, values)


def entries(data: DataConfig):
    """The videos a data section names: an LRS2 split (with its faces root) or face videos."""
    from .data import lrs2_entries, video_entries

    if bool(data.root) == bool(data.videos):
        raise ValueError("give exactly one of data.root (an LRS2 root, --data) or data.videos (--videos)")
    return lrs2_entries(data.root, data.split, data.faces) if data.root else video_entries(data.videos)


def resolve_generator(model: GeneratorConfig, train: GeneratorTrainConfig) -> tuple[GeneratorConfig, dict | None]:
    """The generator's network config with the ViT architecture filled in (from ``train.marlin_config`` or the
    ``train.marlin`` checkpoint; the window is the ViT's frame count), and the MARLIN encoder weights for
    encoder ``marlin`` (else None)."""
    from dataclasses import replace

    from ..models import Marlin, resolve_config

    state, mcfg = None, dict(model.marlin)
    if model.encoder == "marlin":
        if not train.marlin:
            raise ValueError("encoder marlin needs a MARLIN checkpoint (training.marlin, --marlin)")
        enc = Marlin.from_file(train.marlin_config, train.marlin, full_model=False)
        state, mcfg = enc.encoder.state_dict(), enc.config.to_dict()
    elif model.encoder == "vit" and (train.marlin_config or not mcfg):
        mcfg = resolve_config(train.marlin_config or "marlin_vit_base_ytf").to_dict()
    if model.encoder in ("vit", "marlin"):
        model = replace(model, marlin=mcfg, window=mcfg["n_frames"])
    return model, state
