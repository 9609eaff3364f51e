"""Hugging Face interop: the official Hub repos, our `save_pretrained` folders, and transformers VideoMAE.

Folders read (a local path or a Hub id fetched through `huggingface_hub`, weights from safetensors only):

- ``model_type: "marlin"``: the official repos ``ControlNet/marlin_vit_{small,base,large}_ytf`` (config.json with
  the fields of the official ``MarlinConfig``; model.safetensors with the official keys prefixed ``marlin.``) and
  the folders `save_pretrained` writes (the same layout plus a ``marlin_toolkit`` record). No remote code runs.
- ``model_type: "videomae"``: transformers ``VideoMAEModel`` / ``VideoMAEForPreTraining`` /
  ``VideoMAEForVideoClassification`` folders (keys renamed, the pretraining head's pixel order permuted).

Folders written: `save_pretrained` (the official Hub layout) and `export_videomae` (native transformers classes).
"""
from __future__ import annotations

import dataclasses
import json
import re
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..checkpoints import (
    CheckpointError,
    has_decoder,
    load_file,
    videomae_head_order,
    write_safetensors,
)
from ..errors import require
from .config import MarlinConfig
from .files import build_model

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
OURS = "marlin-hf/1"  # the `marlin_toolkit.format` of the folders save_pretrained writes
ARCH_FIELDS = tuple(f.name for f in dataclasses.fields(MarlinConfig))  # + as_feature_extractor in config.json
LAYER_NORM_EPS = 1e-5  # torch's LayerNorm default, used by every norm of the MARLIN model
_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.bin")


# ---- locating a folder ----------------------------------------------------------------------------------
def resolve_folder(source, revision: str | None = None, token: str | bool | None = None) -> Path:
    """A local folder as it is; otherwise a Hub id downloaded (or taken from the huggingface_hub cache; it
    honours ``HF_HUB_OFFLINE``, ``HF_HOME``/``HF_HUB_CACHE`` and the saved token) -> the snapshot folder."""
    path = Path(source)
    if path.is_dir():
        if revision is not None:
            raise CheckpointError(f"{source}: a local folder has no revisions (revision={revision!r})")
        return path
    if path.exists():
        raise CheckpointError(f"{source}: is a file; from_pretrained reads a model folder or a Hub id "
                              f"(Marlin.from_file reads single checkpoint files)")
    if path.is_absolute() or str(source).startswith((".", "~")) or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?",
                                                                                      str(source)):
        raise CheckpointError(f"{source}: no such folder, and not a Hugging Face Hub id (owner/name)")
    hub = require("huggingface_hub", "hf", "loading from the Hugging Face Hub")
    try:
        return Path(hub.snapshot_download(str(source), revision=revision, token=token,
                                          allow_patterns=["*.json", "*.safetensors", "README.md"]))
    except Exception as e:  # noqa: BLE001 - every Hub failure becomes one line naming the repo
        at = f" at revision {revision!r}" if revision else ""
        raise CheckpointError(f"{source}: not a local folder, and the Hugging Face Hub repo{at} could not be "
                              f"fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _read_json(path: Path, source) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{source}: unreadable {path.name} ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: {path.name} is not a JSON object")
    return data


def _read_weights(folder: Path, source) -> dict[str, Tensor]:
    """The tensors of model.safetensors (or of the shards its index names); pickle formats are refused."""
    if (folder / WEIGHTS).is_file():
        files = [folder / WEIGHTS]
    elif (folder / WEIGHTS_INDEX).is_file():
        index = _read_json(folder / WEIGHTS_INDEX, source).get("weight_map", {})
        files = [folder / name for name in sorted(set(index.values()))]
    else:
        pickles = [n for n in _PICKLE_WEIGHTS if (folder / n).exists()]
        found = f" (found {', '.join(pickles)}: pickle files are not read; save them as safetensors)" if pickles else ""
        raise CheckpointError(f"{source}: missing weights: no {WEIGHTS}{found}")
    tensors: dict[str, Tensor] = {}
    for f in files:
        raw = load_file(f)
        if not raw.get("__safetensors__"):
            raise CheckpointError(f"{source}: {f.name} is not a safetensors file")
        tensors.update(raw["tensors"])
    return tensors


# ---- reading ----------------------------------------------------------------------------------------------
def read_pretrained(source, revision: str | None = None, token: str | bool | None = None
                    ) -> tuple[dict[str, Tensor], MarlinConfig, dict]:
    """(MARLIN state dict, config, info) of a folder or Hub id; info: ``kind`` ("marlin" or "videomae"),
    ``folder``, ``training`` (the pretraining record, {} if none)."""
    folder = resolve_folder(source, revision, token)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{source}: no config.json (not a Hugging Face model folder)")
    cfg = _read_json(folder / "config.json", source)
    model_type = cfg.get("model_type")
    if model_type not in ("marlin", "videomae"):
        raise CheckpointError(f"{source}: config.json has model_type {model_type!r}; readable are 'marlin' (the "
                              f"official Hub repos and save_pretrained folders) and 'videomae' (transformers)")
    tensors = _read_weights(folder, source)
    if model_type == "marlin":
        sd, config, training = _from_marlin(cfg, tensors, source)
    else:
        sd, config, training = _from_videomae(cfg, tensors, source)
    return sd, config, {"kind": model_type, "folder": folder, "training": training}


def _from_marlin(cfg: dict, tensors: dict, source) -> tuple[dict, MarlinConfig, dict]:
    missing = [f for f in ARCH_FIELDS if f not in cfg]
    if missing:
        raise CheckpointError(f"{source}: config.json lacks the MARLIN fields {missing}")
    try:  # an impossible geometry is refused as a bad checkpoint folder
        config = MarlinConfig.from_dict({f: cfg[f] for f in ARCH_FIELDS}, f"{source}/config.json")
    except ValueError as e:
        raise CheckpointError(str(e)) from None  # names {source}/config.json
    stray = [k for k in tensors if not k.startswith("marlin.")]
    if stray:
        raise CheckpointError(f"{source}: {WEIGHTS} keys must start with 'marlin.' (official Hub layout): {stray[:5]}")
    record = cfg.get("marlin_toolkit") or {}
    return {k[len("marlin."):]: v for k, v in tensors.items()}, config, record.get("training") or {}


def _videomae_config(cfg: dict, source) -> MarlinConfig:
    """MarlinConfig of a transformers VideoMAEConfig dict; refuses what MARLIN cannot represent."""
    def get(key, default=None):
        value = cfg.get(key, default)
        if value is None:
            raise CheckpointError(f"{source}: config.json lacks {key!r}")
        return value

    img, patch = get("image_size", 224), get("patch_size", 16)
    if isinstance(img, (list, tuple)):
        if len(set(img)) != 1:
            raise CheckpointError(f"{source}: image_size {img} is not square (MARLIN clips are square)")
        img = img[0]
    if isinstance(patch, (list, tuple)):
        patch = patch[0]
    problems = []
    if get("num_channels", 3) != 3:
        problems.append(f"num_channels {cfg['num_channels']} (MARLIN reads RGB)")
    if get("hidden_act", "gelu") != "gelu":
        problems.append(f"hidden_act {cfg['hidden_act']!r} (MARLIN uses exact gelu)")
    hidden, inter = get("hidden_size", 768), get("intermediate_size", 3072)
    dec_hidden, dec_inter = get("decoder_hidden_size", 384), get("decoder_intermediate_size", 1536)
    ratio = inter / hidden
    if int(dec_hidden * ratio) != dec_inter:
        problems.append(f"decoder_intermediate_size {dec_inter} is not {ratio:g} x decoder_hidden_size {dec_hidden} "
                        f"(MARLIN shares one mlp_ratio)")
    if problems:
        raise CheckpointError(f"{source}: this VideoMAE config cannot be expressed as MARLIN: " + "; ".join(problems))
    eps = get("layer_norm_eps", 1e-12)
    if eps != LAYER_NORM_EPS:
        warnings.warn(f"{source}: layer_norm_eps {eps:g} read into MARLIN's LayerNorms (eps {LAYER_NORM_EPS:g}); "
                      f"outputs differ from transformers' by about the relative size of the eps change", stacklevel=3)
    try:
        return MarlinConfig(
            img_size=int(img), patch_size=int(patch), n_frames=int(get("num_frames", 16)),
            tubelet_size=int(get("tubelet_size", 2)), encoder_embed_dim=hidden,
            encoder_depth=get("num_hidden_layers", 12), encoder_num_heads=get("num_attention_heads", 12),
            decoder_embed_dim=dec_hidden, decoder_depth=get("decoder_num_hidden_layers", 4),
            decoder_num_heads=get("decoder_num_attention_heads", 6), mlp_ratio=ratio,
            qkv_bias=bool(get("qv_bias", True)), drop_rate=float(get("hidden_dropout_prob", 0.0)),
            attn_drop_rate=float(get("attention_probs_dropout_prob", 0.0)))
    except ValueError as e:
        raise CheckpointError(f"{source}: config.json: {e}") from None


# MARLIN block names <-> transformers VideoMAELayer names (encoder and decoder blocks alike)
_BLOCK = [("norm1.", "layernorm_before."), ("norm2.", "layernorm_after."),
          ("attn.q_bias", "attention.attention.q_bias"), ("attn.v_bias", "attention.attention.v_bias"),
          ("attn.proj.", "attention.output.dense."), ("mlp.layers.0.linear.", "intermediate.dense."),
          ("mlp.layers.1.linear.", "output.dense.")]
# MARLIN top-level names <-> transformers VideoMAEForPreTraining names
_TOP = [("encoder.patch_embedding.projection.", "videomae.embeddings.patch_embeddings.projection."),
        ("encoder.blocks.", "videomae.encoder.layer."), ("encoder.norm.", "videomae.layernorm."),
        ("enc_dec_proj.", "encoder_to_decoder."), ("decoder.mask_token", "mask_token"),
        ("decoder.blocks.", "decoder.decoder_layers."), ("decoder.norm.", "decoder.norm."),
        ("decoder.head.", "decoder.head.")]
_QKV = ("query", "key", "value")


def _rename(key: str, forward: bool) -> str | None:
    """A MARLIN key -> its VideoMAE key (forward) or back; None for keys with no counterpart."""
    for ours, theirs in _TOP:
        src, dst = (ours, theirs) if forward else (theirs, ours)
        if key.startswith(src):
            rest = key[len(src):]
            if src.endswith(("blocks.", "layer.", "decoder_layers.")):
                index, _, inner = rest.partition(".")
                for b_ours, b_theirs in _BLOCK:
                    b_src, b_dst = (b_ours, b_theirs) if forward else (b_theirs, b_ours)
                    if inner.startswith(b_src):
                        return f"{dst}{index}.{b_dst}{inner[len(b_src):]}"
                return None
            return dst + rest
    return None


def _from_videomae(cfg: dict, tensors: dict, source) -> tuple[dict, MarlinConfig, dict]:
    config = _videomae_config(cfg, source)
    if not any(k.startswith("videomae.") for k in tensors):  # a VideoMAEModel saved on its own
        tensors = {("videomae." + k if k.startswith(("embeddings.", "encoder.", "layernorm.")) else k): v
                   for k, v in tensors.items()}
    if "videomae.layernorm.weight" not in tensors:  # mean-pooling models keep the final norm as fc_norm
        if "fc_norm.weight" not in tensors:
            raise CheckpointError(f"{source}: no final norm (neither videomae.layernorm nor fc_norm): MARLIN's "
                                  f"encoder ends with a LayerNorm, and a VideoMAEModel with use_mean_pooling "
                                  f"true has none")
        for p in ("weight", "bias"):
            tensors[f"videomae.layernorm.{p}"] = tensors.pop(f"fc_norm.{p}")
    sd, qkv, unknown = {}, {}, []
    for key, value in tensors.items():
        if key.startswith(("fc_norm.", "classifier.")):
            continue  # the classification head of a fine-tuned model is no part of MARLIN
        m = re.match(r"(.*\.attention\.attention\.)(query|key|value)\.(weight|bias)$", key)
        if m:
            prefix, which, kind = m.groups()
            if kind == "weight":
                qkv.setdefault(prefix, {})[which] = value
                continue
            if which == "key":
                continue  # a key bias shifts every score of a query equally: softmax ignores it
            key = f"{prefix}{which[0]}_bias"
        new = _rename(key, forward=False)
        if new is None:
            unknown.append(key)
        else:
            sd[new] = value
    for prefix, parts in qkv.items():
        if set(parts) != set(_QKV):
            raise CheckpointError(f"{source}: {prefix}: missing {sorted(set(_QKV) - set(parts))} weights")
        sd[_rename(prefix + "q_bias", forward=False).replace("q_bias", "qkv.weight")] = torch.cat(
            [parts[n] for n in _QKV])
    if unknown:
        raise CheckpointError(f"{source}: VideoMAE keys with no MARLIN counterpart: {unknown[:8]}")
    for name in ("decoder.head.weight", "decoder.head.bias"):
        if name in sd and sd[name].shape[0] == config.patch_dim:
            sd[name] = sd[name][videomae_head_order(config.patch_size, config.tubelet_size)]
    return sd, config, {}


def load_pretrained(cls, source, revision: str | None = None, full: bool | None = False,
                    token: str | bool | None = None):
    """`Marlin.from_pretrained`: the model of a folder or Hub id (full=None: whatever the folder holds)."""
    sd, config, info = read_pretrained(source, revision, token)
    if full is None:
        full = has_decoder(sd)
    elif full and not has_decoder(sd):
        raise CheckpointError(f"{source}: holds only the encoder; full=True needs the decoder weights (a full "
                              f"model's save_pretrained, or a VideoMAEForPreTraining folder)")
    label = str(source) if info["folder"] == Path(source) else f"{source} ({info['folder']})"
    return build_model(cls, config, sd, full, label, info["training"])


# ---- writing ----------------------------------------------------------------------------------------------
def hub_config(model) -> dict:
    """config.json of the official Hub layout (+ our record under ``marlin_toolkit``)."""
    from .._version import __version__

    return {"architectures": ["MarlinModel"], "model_type": "marlin", **model.config.to_dict(),
            "as_feature_extractor": model.decoder is None, "torch_dtype": "float32",
            "marlin_toolkit": {"format": OURS, "version": __version__,
                               "training": getattr(model, "training_record", None) or {}}}


def save_pretrained(model, folder, license: str | None = None, name: str | None = None) -> Path:
    """Write config.json, model.safetensors (official Hub keys: ``marlin.`` + our keys) and a README.md model
    card into ``folder`` (created if needed; other files in it are left alone)."""
    from ..atomic import write_json, write_text

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / WEIGHTS, {f"marlin.{k}": v for k, v in model.state_dict().items()}, {"format": "pt"})
    write_json(folder / "config.json", hub_config(model), indent=2)
    write_text(folder / "README.md", model_card(model, license, name or folder.resolve().name))
    return folder


def model_card(model, license: str | None = None, name: str = "marlin") -> str:
    """README.md for the Hub: architecture, pretraining record, intended use, licence, how to load."""
    c = model.config
    record = getattr(model, "training_record", None) or {}
    run = record.get("config") or {}
    recipe = [f"- {k}: {v}" for k, v in (("data", record.get("data")), ("iterations", record.get("iterations")),
                                         ("stopped by", record.get("stopped_by"))) if v is not None]
    for key in ("mask_strategy", "mask_ratio", "adv_loss", "adv_weight", "lr_base", "epochs", "seed"):
        if key in run:
            recipe.append(f"- {key}: {run[key]}")
    recipe = recipe or ["Not recorded: these weights were not pretrained by this toolkit, or their record was lost."]
    parts = "encoder + decoder (reconstruction)" if model.decoder is not None else "encoder only (features)"
    lic = license or "other"
    return f"""---
license: {lic}
library_name: facemarlin-toolkit
pipeline_tag: feature-extraction
tags: [marlin, video, face, masked-autoencoder, vit]
---

# {name}

MARLIN (Masked Autoencoder for facial video Representation LearnINg, CVPR 2023): a ViT video encoder over
{c.n_frames}-frame {c.img_size}x{c.img_size} face clips cut into {c.tubelet_size}x{c.patch_size}x{c.patch_size}
tubelets ({c.num_tokens} tokens), pretrained by reconstructing masked facial tubelets.

## Architecture

| | |
|---|---|
| parts | {parts} |
| encoder | width {c.encoder_embed_dim}, depth {c.encoder_depth}, {c.encoder_num_heads} heads, mlp ratio {c.mlp_ratio} |
| decoder | width {c.decoder_embed_dim}, depth {c.decoder_depth}, {c.decoder_num_heads} heads |
| qkv bias | {c.qkv_bias} (q and v biases, no k bias) |

## Pretraining

{chr(10).join(recipe)}

## Intended use

Features of cropped, aligned facial video clips (values in [0, 1], shape (B, 3, {c.n_frames}, {c.img_size},
{c.img_size})) for facial attribute, expression, deepfake and lip-sync research. Not for identifying people or
for decisions about them; performance on faces, cameras and conditions unlike the pretraining data is unknown.

## Licence

`{lic}`{"" if license else " - not set when these files were written; state the licence of the weights here"}.
The official MARLIN weights are CC BY-NC 4.0.

## How to load

```python
from marlin import Marlin
model = Marlin.from_pretrained("{name}")          # or a local folder; full=True for the decoder too
features = model.extract_features(clip)          # (B, {c.num_tokens}, {c.encoder_embed_dim})
```

Files: `config.json` (the official MARLIN Hub fields, model_type "marlin"), `model.safetensors` (keys prefixed
`marlin.`), this card. Written by facemarlin-toolkit; no remote code is needed to load it.
"""


def _check_videomae_expressible(config: MarlinConfig) -> None:
    problems = []
    if config.init_values > 0:
        problems.append(f"layer-scale (init_values {config.init_values}): VideoMAELayer has no gamma_1/gamma_2")
    for part in ("encoder", "decoder"):
        head_dim = getattr(config, f"{part}_embed_dim") // getattr(config, f"{part}_num_heads")
        if config.qk_scale is not None and config.qk_scale != head_dim ** -0.5:
            problems.append(f"qk_scale {config.qk_scale} ({part}): VideoMAE scales attention by head_dim ** -0.5")
    if int(config.encoder_embed_dim * config.mlp_ratio) != config.encoder_embed_dim * config.mlp_ratio:
        problems.append(f"mlp_ratio {config.mlp_ratio} gives a fractional hidden width")
    if problems:
        raise CheckpointError("transformers' VideoMAE cannot express this model: " + "; ".join(problems))


def videomae_config(model) -> dict:
    """transformers VideoMAEConfig fields of a MARLIN model (use_mean_pooling false: the encoder norm is
    ``videomae.layernorm``; the same norm is also stored as ``fc_norm`` for use_mean_pooling true)."""
    c = model.config
    _check_videomae_expressible(c)
    arch = "VideoMAEForPreTraining" if model.decoder is not None else "VideoMAEModel"
    return {"architectures": [arch], "model_type": "videomae", "image_size": c.img_size, "patch_size": c.patch_size,
            "num_channels": 3, "num_frames": c.n_frames, "tubelet_size": c.tubelet_size,
            "hidden_size": c.encoder_embed_dim, "num_hidden_layers": c.encoder_depth,
            "num_attention_heads": c.encoder_num_heads, "intermediate_size": int(c.encoder_embed_dim * c.mlp_ratio),
            "hidden_act": "gelu", "hidden_dropout_prob": c.drop_rate, "attention_probs_dropout_prob": c.attn_drop_rate,
            "initializer_range": 0.02, "layer_norm_eps": LAYER_NORM_EPS, "qv_bias": c.qkv_bias,
            "use_mean_pooling": False, "decoder_hidden_size": c.decoder_embed_dim,
            "decoder_num_hidden_layers": c.decoder_depth, "decoder_num_attention_heads": c.decoder_num_heads,
            "decoder_intermediate_size": int(c.decoder_embed_dim * c.mlp_ratio), "norm_pix_loss": False,
            "dtype": "float32"}


def videomae_state_dict(model) -> dict[str, Tensor]:
    """The model's weights under transformers VideoMAE names (the fixed sine-cosine tables are left out:
    transformers builds the same ones)."""
    c = model.config
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("pos_embedding.emb"):
            continue
        if key.endswith("attn.qkv.weight"):
            base = _rename(key.replace("qkv.weight", "q_bias"), forward=True)[:-len("q_bias")]
            for name, part in zip(_QKV, value.chunk(3)):
                out[f"{base}{name}.weight"] = part
            continue
        new = _rename(key, forward=True)
        if new is None:
            raise CheckpointError(f"no VideoMAE name for the MARLIN key {key!r}")
        if new.startswith("decoder.head.") and value.shape[0] == c.patch_dim:
            value = value[torch.argsort(videomae_head_order(c.patch_size, c.tubelet_size))]
        out[new] = value
    out["fc_norm.weight"], out["fc_norm.bias"] = out["videomae.layernorm.weight"], out["videomae.layernorm.bias"]
    return {k: v.clone() for k, v in out.items()}  # no shared storage in safetensors


def _warn_table_difference(model, folder) -> None:
    """transformers rebuilds the sine-cosine tables in float64; the official release files hold float32-computed
    ones (up to ~1.4e-4 away): say so, since outputs then differ by about that much."""
    from .embedding import sincos_table

    diff = max((part.pos_embedding.emb - sincos_table(*part.pos_embedding.emb.shape[1:])).abs().max().item()
               for part in (model.encoder, model.decoder) if part is not None)
    if diff > 0:
        warnings.warn(f"{folder}: this model's sine-cosine position tables differ from the ones transformers builds "
                      f"by up to {diff:.2g} (the official release files hold float32-computed tables); transformers' "
                      f"outputs will differ from this model's by about that much", stacklevel=3)


def export_videomae(model, folder) -> Path:
    """Write a transformers VideoMAE folder (config.json + model.safetensors): VideoMAEForPreTraining for a full
    model, VideoMAEModel for an encoder; both also load as VideoMAEForVideoClassification."""
    from ..atomic import write_json

    config = videomae_config(model)  # refuses what VideoMAE cannot express before writing anything
    _warn_table_difference(model, folder)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / WEIGHTS, videomae_state_dict(model), {"format": "pt"})
    write_json(folder / "config.json", config, indent=2)
    return folder


def push_to_hub(model, repo_id: str, token: str | None = None, private: bool | None = None,
                revision: str | None = None, commit_message: str = "Upload MARLIN model",
                license: str | None = None):
    """save_pretrained into a temporary folder, then create the repo (if needed) and upload the folder."""
    hub = require("huggingface_hub", "hf", "push_to_hub")
    api = hub.HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, license=license, name=repo_id)
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                 revision=revision)
