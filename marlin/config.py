"""The configuration layer: every setting of the toolkit is a field of a typed dataclass section.

One reader for all of them: `load(cls, source, overrides)` takes a YAML file, a dict or an instance, checks
every key (an unknown key is an error naming the file and suggesting the closest known key), converts values
to the field types, and applies ``section.key=value`` overrides. `add_arguments` generates the command-line
flags of a section from its fields (help from ``field(metadata={"help": ...})``); `save_resolved` writes
the resolved configuration beside a run's outputs. The official MARLIN pretraining YAML is read and written
through one alias table (`OFFICIAL_PRETRAIN_KEYS`).
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import enum
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names its source and key."""


# ---- YAML ----------------------------------------------------------------------------------------------
def read_yaml(path) -> dict:
    """The top-level mapping of a YAML file (clear errors for a missing file, bad YAML, a non-mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:  # a binary file (a checkpoint, a video) given as the config
        raise ConfigError(f"{path}: not a YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def parse_assignment(assignment: str) -> tuple[str, object]:
    """``"a.b=value"`` -> ("a.b", value parsed as YAML)."""
    import yaml

    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    key, value = assignment.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({e})") from None


def set_path(data: dict, key: str, value) -> None:
    """Set ``data["a"]["b"] = value`` for key "a.b", creating mappings on the way."""
    node, parts = data, key.split(".")
    for part in parts[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = nxt
    node[parts[-1]] = value


def flatten(data: Mapping, prefix: str = "") -> dict:
    """Nested mappings -> {"a.b.c": value}; an empty mapping stays a value (so {} and a missing key differ)."""
    out = {}
    for k, v in data.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, Mapping) and v else {f"{prefix}{k}": v})
    return out


def merge(base: Mapping, extra: Mapping) -> dict:
    """Recursive merge of plain dicts; ``extra`` wins."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


# ---- typed sections -------------------------------------------------------------------------------------
@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(tp, value, where: str):
    """``value`` converted to the annotated type ``tp`` (dataclass sections recursively)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _coerce(option, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {' or '.join(getattr(o, '__name__', str(o)) for o in options)}, "
                          f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
        return from_dict(tp, value, where)
    if tp is typing.Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):  # a typed choice (e.g. `MaskStrategy`): one of its values
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"{where}: expected one of {choices}, got {value!r}") from None
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            number = tp(float(value)) if tp is int and isinstance(value, str) else tp(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if tp is int and float(value) != number:
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return str(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            value = [value] if origin is list else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {value!r}")
            return tuple(_coerce(a, v, where) for a, v in zip(args, value))
        item = args[0] if args else typing.Any
        return origin(_coerce(item, v, where) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def from_dict(cls, data: Mapping, where: str = "<config>"):
    """A ``cls`` instance from a mapping: unknown keys are errors (with a suggestion), values are converted to
    the field types, missing keys take the field defaults; ``where`` names the source in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(str(key), fields)}; "
                              f"known: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(hints[key], value, f"{where}: {key}")
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None


def to_dict(obj) -> dict:
    """Plain dict of a section (tuples as lists): what `from_dict` reads back and what YAML writes."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, enum.Enum):
            return v.value
        return v
    return plain(obj)


def load(cls, source=None, overrides: Iterable[str] = (), values: Mapping | None = None, where: str | None = None):
    """A ``cls`` from a YAML path, a dict, an instance or None (defaults), then ``overrides`` ("a.b=value",
    values parsed as YAML) and ``values`` ({"a.b": python value}) applied on top."""
    if source is None:
        data, where = {}, where or "<defaults>"
    elif dataclasses.is_dataclass(source) and not isinstance(source, type):
        data, where = to_dict(source), where or "<config>"
    elif isinstance(source, Mapping):
        data, where = dict(source), where or "<dict>"
    else:
        data, where = read_yaml(source), where or str(source)
    for assignment in overrides:
        key, value = parse_assignment(assignment)
        set_path(data, key, value)
    for key, value in (values or {}).items():
        set_path(data, key, value)
    return from_dict(cls, data, where)


def replace(obj, **changes):
    """A copy of a section with some fields changed, checked like a loaded config."""
    return from_dict(type(obj), {**to_dict(obj), **changes}, f"<{type(obj).__name__}>")


def save_resolved(obj, out_dir, name: str = "config.yaml") -> Path:
    """Write the resolved configuration (a section or a plain dict) as YAML beside a run's outputs."""
    import yaml

    from .atomic import write_text

    data = to_dict(obj) if dataclasses.is_dataclass(obj) else obj
    return write_text(Path(out_dir) / name, yaml.safe_dump(data, sort_keys=False))


def setting(help: str, default=None, *, factory=None, default_factory=None):
    """A section field with its help text (shown by the generated flags and `--help`); ``factory`` (or
    ``default_factory``) makes mutable defaults."""
    factory = factory or default_factory
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


# ---- command-line flags ----------------------------------------------------------------------------------
def help_of(field: dataclasses.Field) -> str | None:
    return field.metadata.get("help")


def add_arguments(parser: argparse.ArgumentParser, cls, prefix: str = "", skip: Iterable[str] = (),
                  short: bool = False, choices: Mapping[str, Iterable] | None = None,
                  flags: Mapping[str, str] | None = None, _nested: bool = False) -> None:
    """One ``--a-b`` flag per leaf field of ``cls`` (key "a.b"; nested sections prefixed by their name, or only
    the field name when ``short``; ``flags`` {key: flag} names some otherwise), default None (= the config's
    value); booleans as ``--x / --no-x``; ``choices`` {key: allowed values}. Plus, once per parser,
    ``--set KEY=VALUE``. Read back with `values_from_args`."""
    skip, choices, flags = set(skip), dict(choices or {}), dict(flags or {})
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if key in skip or not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            add_arguments(parser, tp, f"{key}.", skip, short, choices, flags, _nested=True)
            continue
        flag = flags.get(key) or "--" + (f.name if short else key).replace(".", "-").replace("_", "-")
        dest = "cfg:" + key
        default = f.default if f.default is not dataclasses.MISSING else None
        default = default.value if isinstance(default, enum.Enum) else default  # a typed choice: its name
        shown = str(default) if isinstance(default, Path) else repr(default)
        text = f"{help_of(f) or key} [{key}; built-in default {shown}]".replace("%", "%%")
        if tp is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(flag, dest=dest, default=None, metavar=f.name.upper(), choices=choices.get(key),
                                type=functools.partial(_flag_value, tp, flag), help=text)
    if not _nested and not any(a.dest == "set" for a in parser._actions):
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help=f"override any config key, e.g. --set {_example(cls, prefix)} "
                                 f"(repeatable)".replace("%", "%%"))


def _example(cls, prefix: str = "") -> str:
    """``key=value`` of a real field of ``cls`` with its default: the --set example of its help (a fixed example
    named keys that some commands do not have)."""
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    for f in fields:
        if isinstance(f.default, (int, float, str)) and not isinstance(f.default, bool):
            return f"{prefix}{f.name}={f.default}"
    sections = [f for f in fields if dataclasses.is_dataclass(hints[f.name])]
    return _example(hints[sections[0].name], f"{prefix}{sections[0].name}.") if sections else f"{prefix}KEY=VALUE"


def _flag_value(tp, flag: str, text: str):
    import yaml

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and text.lower() in ("none", "null"):
        return None
    try:
        value = text if tp is str else yaml.safe_load(text)
        return _coerce(tp, value, flag)
    except (ConfigError, yaml.YAMLError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def values_from_args(args: argparse.Namespace) -> dict:
    """{"a.b": value} of the generated flags that were given on the command line."""
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}


# ---- the official pretraining YAML layout ------------------------------------------------------------------
# official key path -> our `PretrainConfig` field path; read and written through this one table
OFFICIAL_PRETRAIN_KEYS = {
    "model_name": "name",
    "img_size": "model.img_size", "patch_size": "model.patch_size", "clip_frames": "model.n_frames",
    "tubelet_size": "model.tubelet_size",
    "mask_strategy": "mask_strategy", "temporal_sample_rate": "sample_rate", "mask_percentage_target": "mask_ratio",
    "mlp_ratio": "model.mlp_ratio", "qkv_bias": "model.qkv_bias", "qk_scale": "model.qk_scale",
    "drop_rate": "model.drop_rate", "attn_drop_rate": "model.attn_drop_rate", "norm_layer": "model.norm_layer",
    "init_values": "model.init_values",
    "weight_decay": "weight_decay",
    "adv_loss": "adv_loss", "adv_weight": "adv_weight", "gp_weight": "gp_weight",
    "d_steps": "d_steps", "g_steps": "g_steps",
    "learning_rate.base": "lr_base", "learning_rate.warmup": "lr_warmup", "learning_rate.min": "lr_min",
    "learning_rate.warmup_epochs": "warmup_epochs",
    "optimizer.type": "optimizer", "optimizer.eps": "eps", "optimizer.betas": "betas",
    "encoder.embed_dim": "model.encoder_embed_dim", "encoder.depth": "model.encoder_depth",
    "encoder.num_heads": "model.encoder_num_heads",
    "decoder.embed_dim": "model.decoder_embed_dim", "decoder.depth": "model.decoder_depth",
    "decoder.num_heads": "model.decoder_num_heads",
}
# keys of the official layout that configure nothing here (the official feature cache folder name)
OFFICIAL_IGNORED = {"feature_dir"}
# keys that an official-layout file must hold to define an architecture
OFFICIAL_REQUIRED = ("img_size", "patch_size", "clip_frames", "encoder.embed_dim", "encoder.depth",
                     "encoder.num_heads", "decoder.embed_dim", "decoder.depth", "decoder.num_heads")


def _flatten(data: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v and any(p.startswith(key + ".") for p in OFFICIAL_PRETRAIN_KEYS):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_official_layout(data: Mapping) -> bool:
    """Whether a mapping is in the official pretraining-YAML layout (not our nested `PretrainConfig` layout)."""
    return "clip_frames" in data or isinstance(data.get("encoder"), Mapping)


def from_official(data: Mapping, where: str = "<config>", passthrough: Iterable[str] = ("trainer",)) -> dict:
    """An official-layout mapping -> our nested field layout (unknown keys are errors with a suggestion;
    ``passthrough`` sections of our own, e.g. ``trainer:``, are kept as they are)."""
    passthrough = set(passthrough)
    flat = _flatten({k: v for k, v in data.items() if k not in passthrough})
    missing = [k for k in OFFICIAL_REQUIRED if k not in flat]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} for a MARLIN pretraining config")
    out: dict = {}
    for key, value in flat.items():
        if key in OFFICIAL_IGNORED:
            continue
        if key not in OFFICIAL_PRETRAIN_KEYS:
            known = list(OFFICIAL_PRETRAIN_KEYS) + sorted(passthrough)
            raise ConfigError(f"{where}: unknown key {key!r}{_suggest(key, known)}")
        set_path(out, OFFICIAL_PRETRAIN_KEYS[key], value)
    for key in passthrough & set(data):
        out[key] = data[key]
    return out


def to_official(data: Mapping) -> dict:
    """Our nested field layout (e.g. `to_dict(PretrainConfig)`) -> the official layout, same table."""
    def get(path):
        node = data
        for part in path.split("."):
            node = node[part]
        return node

    out: dict = {}
    for official, ours in OFFICIAL_PRETRAIN_KEYS.items():
        set_path(out, official, get(ours))
    return out
