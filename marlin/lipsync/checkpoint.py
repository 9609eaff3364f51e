"""Lip-sync checkpoints: the toolkit's container (`marlin.checkpoints.save_container`, kind "lipsync"), the older
"marlin-lipsync/1" torch dicts, and Wav2Lip's released files (`marlin.lipsync.wav2lip`).

A container (`marlin.loop.save_state`) holds the network's tensors as ``model.*`` (and ``disc.*``), optimizer
tensors as ``<optimizer>.state.<param>.<name>``, random state as ``rng.*``; its config is
``{"network": "syncnet" | "generator", "model": {...}}`` (what rebuilds the network) and its meta
``{"step", "history", "sync_on", "training", "optimizers"}`` (the training record, the optimizers' param groups).
Everything is read weights-only; errors name the file.
"""
from __future__ import annotations

from ..checkpoints import CheckpointError, load_file, load_into
from ..loop import read_state

OLD_FORMAT = "marlin-lipsync/1"
NETWORKS = ("syncnet", "generator")
STATES = ("model", "disc", "optimizer", "disc_optimizer", "rng")  # written by `marlin.lipsync.train`


def _from_container(path, network: str) -> dict:
    ck = read_state(path, "lipsync", STATES)
    config = ck["config"]
    if config.get("network") != network:
        raise CheckpointError(f"{path}: is a {config.get('network')} checkpoint, expected a {network} checkpoint")
    if "model" not in ck:
        raise CheckpointError(f"{path}: lipsync checkpoint without network weights")
    return {**ck, "config": config.get("model", {}), "training": ck.get("training", {}),
            "sync_on": bool(ck.get("sync_on", False))}


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
    return load_into(SyncNet(model_config(SyncNetConfig, ck["config"], path)), ck["model"], path).eval()


def load_generator(path):
    """A generator: ours (`marlin lipsync train`) or Wav2Lip's released wav2lip.pth / wav2lip_gan.pth."""
    from .generator import Generator, GeneratorConfig
    from .wav2lip import FACE_SIZE, load_released

    sd, raw = _read(path)
    if sd is not None:
        gen = Generator(GeneratorConfig(encoder="wav2lip", face_size=FACE_SIZE))
        return load_released(gen, sd, "generator", path).eval()
    ck = load_lipsync_checkpoint(path, "generator", raw)
    return load_into(Generator(model_config(GeneratorConfig, ck["config"], path)), ck["model"], path).eval()


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
    load_into(disc, ck["disc"], path, problem="its discriminator does not fit")


def model_config(cls, data: dict, source):
    """A model config from a checkpoint's dict; keys this version does not know are an error naming the file
    (fields added later take their defaults, so older checkpoints still load)."""
    from ..config import ConfigError, from_dict

    try:
        return from_dict(cls, data, str(source))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
