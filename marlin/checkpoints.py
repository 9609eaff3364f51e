"""Reading and writing MARLIN weights without ever executing code from a file.

Formats read: the official `*.encoder.pt` / `*.full.pt` state dicts, official Lightning `*.ckpt`
(`state_dict` holds encoder, decoder, enc_dec_proj and the critic `discriminator.*`), VideoMAE
pretraining checkpoints (`{"model": ...}`) and our own safetensors files (weights + config).
"""
from __future__ import annotations

import json
import pickle
import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

OURS_FORMAT = "marlin-safetensors/1"  # model files written before the container family (still read)
CONTAINER_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model. The message names the file."""


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file whatever its name: 8-byte little-endian header size, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size


_SHA256: dict = {}


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (remembered per path, size and modification time within a process)."""
    import hashlib

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA256:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def load_file(path) -> dict:
    """Read a checkpoint as plain tensors/containers: safetensors, or torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from None
        return {"__safetensors__": True, "metadata": meta, "tensors": tensors}
    with open(path, "rb") as f:
        magic = f.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic[:1] == b"\x80"):  # torch zip archive or a raw pickle
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (unknown file format)")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: refused to load: the file holds Python objects other than tensors and plain containers, "
            f"which could run code (weights-only loading blocks them; detail: {detail})") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {e})") from None


_VIDEOMAE_RULES = [
    (r"^encoder\.patch_embed\.proj\.", "encoder.patch_embedding.projection."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.mlp\.fc1\.", r"\1.blocks.\2.mlp.layers.0.linear."),
    (r"^(encoder|decoder)\.blocks\.(\d+)\.mlp\.fc2\.", r"\1.blocks.\2.mlp.layers.1.linear."),
    (r"^encoder_to_decoder\.", "enc_dec_proj."),
    (r"^mask_token$", "decoder.mask_token"),
]


def convert_videomae(sd: dict, patch_size: int = 16, tubelet_size: int = 2) -> dict:
    """Rename a VideoMAE pretraining state dict to MARLIN keys.

    VideoMAE's decoder head predicts pixels in (t, h, w, c) order while MARLIN's targets are channel-major
    (c, t, h, w): the head's output rows are permuted accordingly so the loaded decoder keeps its meaning.
    """
    out = {}
    for k, v in sd.items():
        nk = k
        for pat, rep in _VIDEOMAE_RULES:
            nk = re.sub(pat, rep, nk)
        if nk in ("encoder.head.weight", "encoder.head.bias") or nk.endswith("pos_embed"):
            continue  # identity classifier head / fixed tables rebuilt by the model
        out[nk] = v
    for name in ("decoder.head.weight", "decoder.head.bias"):
        if name in out and out[name].shape[0] == 3 * tubelet_size * patch_size ** 2:
            out[name] = out[name][videomae_head_order(patch_size, tubelet_size)]
    return out


def videomae_head_order(patch_size: int = 16, tubelet_size: int = 2) -> Tensor:
    """Row i of a MARLIN decoder head, pixel (c, t, h, w), is row idx[i] of a VideoMAE head, pixel (t, h, w, c)
    (its inverse, `argsort(idx)`, goes back)."""
    p, t = patch_size, tubelet_size
    return torch.arange(3 * t * p * p).view(t, p, p, 3).permute(3, 0, 1, 2).reshape(-1)


OUR_LIGHTNING_PREFIXES = ("model.", "critic.")  # `marlin.train.module.PretrainModule`: generator, critic


def split_checkpoint(raw: dict, source="<checkpoint>") -> tuple[dict, dict, dict]:
    """Any supported checkpoint -> (model state dict, critic state dict, info).

    info holds `kind` ("ours", "official", "lightning", "videomae") and, for ours, the stored `config` (a dict:
    `MarlinConfig.from_dict` rebuilds it) and `training` metadata.
    """
    if not isinstance(raw, dict):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(raw).__name__}")
    info: dict = {}
    if raw.get("__safetensors__"):
        meta = raw["metadata"]
        tensors = raw["tensors"]
        if meta.get("format") in (OURS_FORMAT, "marlin-model"):
            container = _container_fields(meta, source)
            info.update(kind="ours", config=container["config"], training=container["meta"].get("training", {}))
        else:
            info["kind"] = "safetensors"
        sd = tensors
    elif "state_dict" in raw and isinstance(raw["state_dict"], dict):
        info.update(kind="lightning", hyper_parameters=raw.get("hyper_parameters"),
                    global_step=raw.get("global_step"))
        sd = raw["state_dict"]
        if any(k.startswith(OUR_LIGHTNING_PREFIXES) for k in sd):  # `marlin pretrain`'s own last.ckpt
            info["kind"] = "lightning-ours"
            sd = {("discriminator." + k[len("critic."):] if k.startswith("critic.") else k[len("model."):]): v
                  for k, v in sd.items() if k.startswith(OUR_LIGHTNING_PREFIXES)}
    elif "model" in raw and isinstance(raw["model"], dict):
        info["kind"] = "videomae"
        sd = convert_videomae(raw["model"])
    else:
        info["kind"] = "official"
        sd = raw
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    model_sd = OrderedDict((k, v) for k, v in sd.items() if not k.startswith("discriminator."))
    critic_sd = OrderedDict((k[len("discriminator."):], v) for k, v in sd.items() if k.startswith("discriminator."))
    return model_sd, critic_sd, info


def has_decoder(sd: dict) -> bool:
    return any(k.startswith("decoder.") for k in sd)


def suggest_config(sd: dict, presets: dict | None = None) -> str:
    """A human hint of the architecture a state dict was made for; with ``presets`` (name -> preset with a
    ``config``, e.g. `marlin.models.PRESETS`) it names a matching one."""
    try:
        d = sd["encoder.patch_embedding.projection.weight"].shape[0]
    except KeyError:
        return "cannot infer: no encoder.patch_embedding.projection.weight"
    depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"encoder\.blocks\.(\d+)\.", k))), default=-1)
    dec_d = sd["enc_dec_proj.weight"].shape[0] if "enc_dec_proj.weight" in sd else None
    dec_depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"decoder\.blocks\.(\d+)\.", k))), default=-1)
    n_tok = sd["encoder.pos_embedding.emb"].shape[1] if "encoder.pos_embedding.emb" in sd else None
    hint = f"encoder embed_dim {d}, depth {depth}"
    if dec_d:
        hint += f"; decoder embed_dim {dec_d}, depth {dec_depth}"
    if n_tok:
        hint += f"; {n_tok} tokens"
    if presets is None:
        return hint
    match = [n for n, p in presets.items() if p.config.encoder_embed_dim == d and p.config.encoder_depth == depth]
    if match:
        hint += f" (matches preset {match[0]})"
    else:
        hint += " (no preset matches: pass an official-layout YAML with these sizes)"
    return hint


# Entries a file may lack: buffers the module rebuilds itself (MARLIN's fixed sine-cosine tables, which VideoMAE
# files omit; BatchNorm's step counter, which files written before it existed lack).
REBUILT = ("pos_embedding.emb", "num_batches_tracked")


def load_into(module: nn.Module, sd: dict, source="<checkpoint>", strict: bool = True, presets: dict | None = None,
              problem: str = "checkpoint does not fit the model") -> nn.Module:
    """Load `sd` into `module` after ONE check of the whole file, the one every loader uses: entries that are not
    tensors, missing keys (but `REBUILT` buffers), unexpected keys and shape conflicts are one `CheckpointError`
    line, "<source>: <problem>: missing keys (n): ...; unexpected keys (n): ...; shape conflicts (n): ...", with
    the architecture the file suggests where ``presets`` is given (a MARLIN model: `suggest_config` names a
    matching preset). Not ``strict``: missing and unexpected keys are allowed, only the module's keys load."""
    bad = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not tensors: {bad[:5]}")
    own = module.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith(REBUILT)]
    unexpected = [k for k in sd if k not in own]
    conflicts = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in sd if k in own and sd[k].shape != own[k].shape]
    if conflicts or (strict and (missing or unexpected)):
        parts = [f"{title} ({len(items)}): " + ", ".join(items[:12]) + (" ..." if len(items) > 12 else "")
                 for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                                      ("shape conflicts", conflicts)) if items]
        if presets is not None:
            parts.append(f"the file suggests: {suggest_config(sd, presets)}")
        raise CheckpointError(f"{source}: {problem}: " + "; ".join(parts))
    module.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return module


def save_container(path, tensors: dict[str, Tensor], kind: str, config: dict | None = None,
                   meta: dict | None = None) -> Path:
    """The toolkit's one checkpoint format: a safetensors file whose header holds ``format`` ("marlin-<kind>":
    model, downstream, lipsync), ``version``, ``config`` (what rebuilds the network) and ``meta`` (training
    record), both JSON. Written atomically and fsynced."""
    from .atomic import to_json

    header = {"format": f"marlin-{kind}", "version": str(CONTAINER_VERSION),
              "config": to_json(config or {}, None), "meta": to_json(meta or {}, None)}
    return write_safetensors(path, tensors, header)


def write_safetensors(path, tensors: dict[str, Tensor], header: dict[str, str]) -> Path:
    """Tensors (detached, contiguous, on the CPU) and a string header as one safetensors file, written
    atomically and fsynced: `save_container`'s writer, and the Hugging Face layouts' (header {"format": "pt"})."""
    from safetensors.torch import save_file

    from .atomic import atomic_path

    with atomic_path(path, fsync=True) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=header)
    return Path(path)


def _container_fields(header: dict, source) -> dict:
    """{"kind", "version", "config", "meta"} of a container header (and of the two formats before it)."""
    fmt = header.get("format", "")
    try:
        if fmt == OURS_FORMAT:  # model file before the container family
            return {"kind": "model", "version": 1, "config": json.loads(header["config"]),
                    "meta": {"training": json.loads(header.get("training", "{}"))}}
        if fmt == "marlin-downstream/1":  # downstream head before the container family
            return {"kind": "downstream", "version": 1, "config": {}, "meta": json.loads(header["meta"])}
        if fmt.startswith("marlin-"):
            version = int(header.get("version", 1))
            if version > CONTAINER_VERSION:
                raise CheckpointError(f"{source}: written by a newer toolkit ({fmt} version {version}; "
                                      f"this one reads up to {CONTAINER_VERSION}): upgrade facemarlin-toolkit")
            return {"kind": fmt[len("marlin-"):], "version": version, "config": json.loads(header.get("config", "{}")),
                    "meta": json.loads(header.get("meta", "{}"))}
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{source}: damaged {fmt} header ({e})") from None
    raise CheckpointError(f"{source}: not a MARLIN toolkit checkpoint (safetensors header format {fmt!r})")


def load_container(path, kind: str) -> tuple[dict[str, Tensor], dict, dict]:
    """(tensors, config, meta) of a checkpoint written by `save_container` with ``kind`` (or its older format)."""
    raw = load_file(path)
    if not isinstance(raw, dict) or not raw.get("__safetensors__"):
        raise CheckpointError(f"{path}: not a MARLIN toolkit {kind} checkpoint (expected a .safetensors file)")
    fields = _container_fields(raw["metadata"], path)
    if fields["kind"] != kind:
        raise CheckpointError(f"{path}: holds a {fields['kind']} checkpoint, expected a {kind} checkpoint")
    return raw["tensors"], fields["config"], fields["meta"]


def save_safetensors(path, tensors: dict, config, training: dict | None = None) -> None:
    """A model file: weights and the config (a `MarlinConfig`) that rebuilds the model (+ the training record)."""
    save_container(path, tensors, "model", config.to_dict(), {"training": training or {}})


def save_torch(path, obj) -> None:
    """Atomic torch.save (used for the official `.pt` layouts)."""
    from .atomic import atomic_path

    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, str(tmp))
