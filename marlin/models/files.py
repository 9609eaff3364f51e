"""A `Marlin` from and to files: what `Marlin.from_file`, `from_online` and `export_official` do, each a function
the classmethod calls in one line. Files are read and written through `marlin.checkpoints` (which sits below the
model and knows nothing of it); the Hugging Face layouts are `marlin.models.hf`'s, downloads `marlin.hub`'s."""
from __future__ import annotations

import os
from collections import OrderedDict

from ..checkpoints import CheckpointError, has_decoder, load_file, load_into, save_torch, split_checkpoint
from .config import PRESETS, MarlinConfig, resolve_config


def load_model(cls, name_or_yaml, path=None, full_model: bool | None = None):
    """`Marlin.from_file`: a ``cls`` model from any supported file (`marlin.checkpoints.split_checkpoint`), its
    config from ``name_or_yaml`` or, for our safetensors files, from the file (``name_or_yaml`` None; also the
    marlin-pytorch 0.2 call ``from_file(path)``). The architecture never comes from a `.ckpt`'s recorded
    hyper-parameters."""
    if path is None:
        name_or_yaml, path = None, name_or_yaml
    sd, _, info = split_checkpoint(load_file(path), path)
    if name_or_yaml is not None:
        config = resolve_config(name_or_yaml)
    elif "config" in info:
        config = MarlinConfig.from_dict(info["config"], str(path))
    else:
        raise CheckpointError(f"{path}: this file does not carry a config; pass a preset name or YAML")
    return build_model(cls, config, sd, full_model, path, info.get("training"))


def build_model(cls, config: MarlinConfig, sd: dict, full_model: bool | None, source, training: dict | None = None):
    """A ``cls`` model of ``config`` holding ``sd`` (one check of the whole file: `marlin.checkpoints.load_into`,
    which names a matching preset on a mismatch); ``full_model`` None: full when the weights hold a decoder.
    The common end of the file loaders (`load_model`, `marlin.models.hf.load_pretrained`)."""
    full = has_decoder(sd) if full_model is None else full_model
    model = cls(config, full_model=full)
    if not full:
        sd = {k: v for k, v in sd.items() if k.startswith("encoder.")}
    load_into(model, sd, source=source, presets=PRESETS)
    model.training_record = training or {}
    return model


def load_release(cls, name: str = "marlin_vit_base_ytf", full_model: bool = False, progress: bool = True,
                 base_url: str | None = None):
    """`Marlin.from_online`: the official release checkpoint of preset ``name`` (`*.full.pt` with ``full_model``,
    else `*.encoder.pt`), downloaded once into `marlin.hub.cache_dir()`, as a ``cls`` model. ``base_url`` (or
    `$MARLIN_RELEASE_URL`) replaces the release address, e.g. for a mirror."""
    from ..hub import cache_dir, download

    if name not in PRESETS:
        raise ValueError(f"no official release for {name!r}; choose one of {list(PRESETS)}")
    url = PRESETS[name].full_url if full_model else PRESETS[name].encoder_url
    base_url = base_url or os.environ.get("MARLIN_RELEASE_URL")
    if base_url:
        url = base_url.rstrip("/") + "/" + url.rsplit("/", 1)[1]
    path = download(url, cache_dir() / url.rsplit("/", 1)[1], progress=progress)
    return load_model(cls, name, path, full_model)


def export_official(model, path, encoder_only: bool | None = None) -> None:
    """`Marlin.export_official`: the official `*.encoder.pt` (encoder keys only; also for an encoder-only model) or
    `*.full.pt` state-dict layout, chosen by the file name unless ``encoder_only`` says."""
    if encoder_only is None:
        encoder_only = str(path).endswith(".encoder.pt") or model.decoder is None
    save_torch(path, OrderedDict((k, v.detach().cpu()) for k, v in model.state_dict().items()
                                 if not encoder_only or k.startswith("encoder.")))
