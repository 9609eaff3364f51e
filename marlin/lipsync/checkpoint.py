"""Lip-sync checkpoints: the toolkit's container (`marlin.checkpoints.save_container`, kind "lipsync"), the older
"marlin-lipsync/1" torch dicts, and Wav2Lip's released files (`marlin.lipsync.wav2lip`).

A container holds the network's tensors as ``model.*`` (and ``disc.*``), optimizer tensors as
``<optimizer>.state.<param>.<name>``; its config is ``{"network": "syncnet" | "generator", "model": {...}}`` (what
rebuilds the network) and its meta ``{"step", "history", "sync_on", "training", "optimizers"}`` (the training
record, the optimizers' param groups). Everything is read weights-only; errors name the file.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoints import CheckpointError, load_container, load_file, save_container

OLD_FORMAT = "marlin-lipsync/1"
NETWORKS = ("syncnet", "generator")
_MODULES = ("model", "disc")
_OPTIMIZERS = ("optimizer", "disc_optimizer")


def _flatten_optimizer(name: str, sd: dict) -> tuple[dict, dict]:
    tensors, plain = {}, {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{name}.state.{pid}.{k}"] = v
            else:
                plain.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def _unflatten_optimizer(name: str, tensors: dict, meta: dict) -> dict:
    state: dict = {}
    head = f"{name}.state."
    for key, v in tensors.items():
        if key.startswith(head):
            pid, k = key[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[k] = v
    for pid, values in meta.get("state", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_lipsync_checkpoint(path, network: str, config: dict, step: int, history: list, training: dict | None = None,
                    sync_on: bool | None = None, **states) -> Path:
    """Write a lipsync container: ``states`` are ``model``/``disc`` (module state dicts) and
    ``optimizer``/``disc_optimizer`` (optimizer state dicts); None entries are left out."""
    tensors, optimizers = {}, {}
    for name, sd in states.items():
        if sd is None:
            continue
        if name in _MODULES:
            tensors.update({f"{name}.{k}": v for k, v in sd.items()})
        elif name in _OPTIMIZERS:
            t, optimizers[name] = _flatten_optimizer(name, sd)
            tensors.update(t)
        else:
            raise ValueError(f"unknown checkpoint entry {name!r}")
    meta = {"step": step, "history": history, "training": training or {}, "optimizers": optimizers}
    if sync_on is not None:
        meta["sync_on"] = sync_on
    return save_container(path, tensors, "lipsync", config={"network": network, "model": config}, meta=meta)


def _from_container(path, network: str) -> dict:
    tensors, config, meta = load_container(path, "lipsync")
    if config.get("network") != network:
        raise CheckpointError(f"{path}: is a {config.get('network')} checkpoint, expected a {network} checkpoint")
    ck = {"config": config.get("model", {}), "step": int(meta.get("step", 0)), "history": meta.get("history", []),
          "training": meta.get("training", {}), "sync_on": bool(meta.get("sync_on", False))}
    for name in _MODULES:
        head = name + "."
        sd = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
        if sd:
            ck[name] = sd
    for name, m in meta.get("optimizers", {}).items():
        ck[name] = _unflatten_optimizer(name, tensors, m)
    if "model" not in ck:
        raise CheckpointError(f"{path}: lipsync checkpoint without network weights")
    return ck


def load_lipsync_checkpoint(path, network: str, raw=None) -> dict:
    """A lipsync checkpoint of ``network`` ("syncnet" or "generator") as a dict: config, step, history, training,
    sync_on, model (+ optimizer, disc, disc_optimizer when saved). Reads the container and the older
    "marlin-lipsync/1" torch dict; errors name the file. ``raw``: the file already read by `load_file`."""
    raw = load_file(path) if raw is None else raw
    if isinstance(raw, dict) and raw.get("__safetensors__"):
        return _from_container(path, network)
    if not isinstance(raw, dict) or raw.get("format") != OLD_FORMAT:
        from .wav2lip import released_network, released_state

        sd = released_state(raw)
        if sd is not None:
            raise CheckpointError(f"{path}: is one of Wav2Lip's released files ({released_network(sd)}), not a "
                                  f"toolkit checkpoint: load it with load_syncnet / load_generator")
        raise CheckpointError(f"{path}: not a lipsync checkpoint (written by `marlin lipsync train[-syncnet]`)")
    if raw.get("kind") != network:
        raise CheckpointError(f"{path}: is a {raw.get('kind')} checkpoint, expected a {network} checkpoint")
    return {"training": {}, "sync_on": False, **{k: v for k, v in raw.items() if k not in ("format", "kind")}}


def _read(path):
    """(state dict in Wav2Lip's names when ``path`` is a released Wav2Lip file, else None; the file's content)."""
    from .wav2lip import released_state

    raw = load_file(path)
    return released_state(raw), raw


def load_syncnet(path):
    """A SyncNet expert: ours (`marlin lipsync train-syncnet`) or Wav2Lip's released lipsync_expert.pth."""
    from .syncnet import SyncNet, SyncNetConfig
    from .wav2lip import FACE_SIZE, WINDOW, load_released

    sd, raw = _read(path)
    if sd is not None:
        net = SyncNet(SyncNetConfig(window=WINDOW, face_size=FACE_SIZE, arch="wav2lip"))
        return load_released(net, sd, "syncnet", path).eval()
    ck = load_lipsync_checkpoint(path, "syncnet", raw)
    net = SyncNet(model_config(SyncNetConfig, ck["config"], path))
    net.load_state_dict(ck["model"])
    return net.eval()


def load_generator(path):
    """A generator: ours (`marlin lipsync train`) or Wav2Lip's released wav2lip.pth / wav2lip_gan.pth."""
    from .generator import Generator, GeneratorConfig
    from .wav2lip import FACE_SIZE, load_released

    sd, raw = _read(path)
    if sd is not None:
        gen = Generator(GeneratorConfig(encoder="wav2lip", face_size=FACE_SIZE))
        return load_released(gen, sd, "generator", path).eval()
    ck = load_lipsync_checkpoint(path, "generator", raw)
    gen = Generator(model_config(GeneratorConfig, ck["config"], path))
    gen.load_state_dict(ck["model"])
    return gen.eval()


def load_discriminator_weights(disc, path) -> None:
    """Start ``disc`` from Wav2Lip's visual_quality_disc.pth or from the discriminator of our generator checkpoint."""
    sd, raw = _read(path)
    if sd is not None:
        from .wav2lip import load_released

        load_released(disc, sd, "disc", path)
        return
    ck = load_lipsync_checkpoint(path, "generator", raw)
    if "disc" not in ck:
        raise CheckpointError(f"{path}: generator checkpoint without a discriminator")
    disc.load_state_dict(ck["disc"])


def model_config(cls, data: dict, source):
    """A model config from a checkpoint's dict; keys this version does not know are an error naming the file
    (fields added later take their defaults, so older checkpoints still load)."""
    from ..config import ConfigError, from_dict

    try:
        return from_dict(cls, data, str(source))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
