"""Resumable training for the toolkit's own loops (downstream `fit`, the lip-sync SyncNet and generator loops;
pretraining is Lightning's): networks, optimizers, step, random state and history rows in one checkpoint
container (`marlin.checkpoints.save_container`), written atomically every N steps and at the end; a resume refuses
a checkpoint made under another config, naming the fields that differ. Also the loops' one progress bar and one
history writer.

Container layout: a module's tensors as ``<name>.<key>``, an optimizer's as ``<name>.state.<param>.<key>`` (its
param groups and plain values in meta "optimizers"), random states as ``rng.<name>``; meta holds "step",
"history", "optimizers" and whatever the loop adds. Non-finite floats in meta survive the round trip.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoints import CheckpointError, load_container, load_into, save_container

STATE_KIND = "train-state"  # the container kind of a loop's state when the loop has no format of its own
_FLOAT = "__float__"  # meta: {"__float__": "nan" | "inf" | "-inf"} (strict JSON has no such numbers)


# ---- meta that JSON can hold -------------------------------------------------------------------------------
def encode(obj):
    """A JSON-safe copy of ``obj`` where NaN and infinities are kept (as {"__float__": "nan"} ...)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return {_FLOAT: str(obj)}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    return obj


def decode(obj):
    """The inverse of `encode`."""
    if isinstance(obj, dict):
        return float(obj[_FLOAT]) if set(obj) == {_FLOAT} else {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


# ---- named state dicts <-> container tensors ---------------------------------------------------------------
def _is_optimizer_state(sd: dict) -> bool:
    return set(sd) == {"state", "param_groups"}


def flatten_states(states: dict[str, dict]) -> tuple[dict, dict]:
    """Named state dicts (modules: flat tensors; optimizers: state + param_groups) -> (tensors, meta
    "optimizers"). None entries are left out."""
    tensors, optimizers = {}, {}
    for name, sd in states.items():
        if sd is None:
            continue
        if not _is_optimizer_state(sd):
            tensors.update({f"{name}.{k}": v for k, v in sd.items()})
            continue
        plain = {}
        for pid, values in sd["state"].items():
            for k, v in values.items():
                if torch.is_tensor(v):
                    tensors[f"{name}.state.{pid}.{k}"] = v
                else:
                    plain.setdefault(str(pid), {})[k] = v
        optimizers[name] = {"param_groups": sd["param_groups"], "state": plain}
    return tensors, optimizers


def unflatten_states(tensors: dict, optimizers: dict, names=None) -> dict[str, dict]:
    """The state dicts ``names`` (those present; None: all) from a container's tensors and meta "optimizers"."""
    if names is None:
        names = sorted({k.split(".", 1)[0] for k in tensors} | set(optimizers))
    out = {}
    for name in names:
        head = name + "."
        if name in optimizers:
            state: dict = {}
            for key, v in tensors.items():
                if key.startswith(head + "state."):
                    pid, k = key[len(head + "state."):].split(".", 1)
                    state.setdefault(int(pid), {})[k] = v
            for pid, values in optimizers[name].get("state", {}).items():
                state.setdefault(int(pid), {}).update(values)
            out[name] = {"state": state, "param_groups": optimizers[name]["param_groups"]}
        elif sd := {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}:
            out[name] = sd
    return out


def save_state(path, kind: str, config: dict, states: dict[str, dict], step: int, history: list, **meta) -> Path:
    """One container: ``states`` (named state dicts), ``config`` (what a resume must match), meta step, history
    and ``meta``; written atomically."""
    tensors, optimizers = flatten_states(states)
    meta = {"step": int(step), "history": history, "optimizers": optimizers, **meta}
    return save_container(path, tensors, kind, config=config, meta=encode(meta))


def read_state(path, kind: str, names=None) -> dict:
    """{"config", "step", "history", meta entries..., and the state dicts ``names`` found (None: all)} of a
    `save_state` file."""
    tensors, config, meta = load_container(path, kind)
    meta = decode(meta)
    out = {**meta, "config": config, "step": int(meta.get("step", 0)), "history": list(meta.get("history", []))}
    return {**out, **unflatten_states(tensors, meta.get("optimizers", {}), names)}


# ---- random state --------------------------------------------------------------------------------------------
def rng_state(generators: dict[str, torch.Generator]) -> dict:
    """The global torch (and CUDA) random state and ``generators``' states, as tensors."""
    out = {"torch": torch.get_rng_state(), **{name: g.get_state() for name, g in generators.items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return out


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    for name, g in generators.items():
        if name in state:
            g.set_state(state[name])
    cuda = [state[k] for k in sorted((k for k in state if k.startswith("cuda")), key=lambda k: int(k[4:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---- configs -------------------------------------------------------------------------------------------------
def config_differences(found, expected, source="<checkpoint>") -> list[str]:
    """"field: checkpoint X, this run Y" for each field that differs. ``expected``: a dict, or a config dataclass
    (then ``found`` is read as one: keys it lacks take their defaults, keys the class lacks are an error)."""
    from .config import ConfigError, flatten, from_dict, to_dict

    if dataclasses.is_dataclass(expected):
        try:
            found = from_dict(type(expected), found, str(source))
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        found, expected = to_dict(found), to_dict(expected)
    have, want = (flatten(json.loads(json.dumps(encode(x), default=str))) for x in (found, expected))
    return [f"{k}: checkpoint {have.get(k, '<none>')!r}, this run {want.get(k, '<none>')!r}"
            for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]


# ---- the resumable state of a loop -------------------------------------------------------------------------
class TrainState:
    """The resumable state of one training loop, saved to ``path``.

    ``parts``: objects with ``state_dict`` / ``load_state_dict`` (modules, optimizers; None: absent) saved under
    their names; ``config``: stored in the container, and what a resume must match (``match``: the part to
    compare when the stored config holds more, e.g. a dataclass for a network section); ``generators``: random
    generators of the loop, saved with the global torch random state; ``read``: the reader of a loop with its own
    format (default `read_state`); ``history_file``: also written at each save (`write_history`)."""

    def __init__(self, path, kind: str, config: dict, parts: dict, *, match=None, label: str = "training",
                 generators: dict[str, torch.Generator] | None = None, read: Callable[[Path], dict] | None = None,
                 history_file=None):
        self.path, self.kind, self.config, self.label = Path(path), kind, config, label
        self.history_file = history_file
        self.parts = {k: v for k, v in parts.items() if v is not None}
        self.match = config if match is None else match
        self.generators = generators or {}
        self.read = read or (lambda p: read_state(p, kind))

    def resume(self) -> dict | None:
        """Load the saved state into the parts (and the random state) when ``path`` exists; returns what was
        read (step, history, the loop's own meta and unloaded state dicts), None for a fresh run. A checkpoint
        of another config is refused: the error names the fields that differ."""
        if not self.path.exists():
            return None
        ck = self.read(self.path)
        diff = config_differences(ck["config"], self.match, self.path)
        if diff:
            raise CheckpointError(f"{self.path}: exists with another {self.label} config ({'; '.join(diff)}); "
                                  f"choose another output or delete it")
        for name, part in self.parts.items():
            if name not in ck:
                continue
            if isinstance(part, torch.nn.Module):  # a state that does not fit: one line naming the file
                load_into(part, ck[name], self.path, problem=f"the saved {name} does not fit this run's")
            else:
                part.load_state_dict(ck[name])  # an optimizer's state follows its parameters' device
        set_rng_state(ck.get("rng", {}), self.generators)
        return ck

    def save(self, step: int, history: list, tensors: dict[str, dict] | None = None, **meta) -> Path:
        """Write the state (atomically): the parts, random state, ``tensors`` (more named state dicts), step,
        history and ``meta``."""
        states = {**{k: p.state_dict() for k, p in self.parts.items()}, **(tensors or {}),
                  "rng": rng_state(self.generators)}
        if self.history_file is not None:
            write_history(self.history_file, history)
            if history:
                from .curves import plot_steps

                plot_steps(history, curves_path(self.history_file))
        return save_state(self.path, self.kind, self.config, states, step, history, **meta)


def due(step: int, every: int, total: int) -> bool:
    """Save now? Every ``every`` steps and at the last one."""
    return step % max(1, every) == 0 or step >= total


def progress_bar(total: int, desc: str, start: int = 0, enabled: bool = True, unit: str = "step",
                 leave: bool = True):
    """The loops' progress bar (tqdm): ``start`` of ``total`` done already (a resumed run)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit=unit, disable=not enabled, leave=leave,
                dynamic_ncols=True)


def curves_path(history_file) -> Path:
    """Where the losses of ``history_file`` (X.history.csv) are drawn: X.curves.png."""
    history_file = Path(history_file)
    stem = history_file.name[:-len(".history.csv")] if history_file.name.endswith(".history.csv") else history_file.stem
    return history_file.with_name(f"{stem}.curves.png")


def write_history(path, rows: list, index: str | None = "step") -> Path:
    """History rows (dicts, or numbers: a "loss" column) as CSV (columns in first-seen order; ``index``, counting
    from 1, first unless None) or JSON (by ``path``'s suffix), atomically."""
    import csv
    import io

    from .atomic import write_json, write_text

    rows = [{**({index: i} if index else {}), **(r if isinstance(r, dict) else {"loss": r})}
            for i, r in enumerate(rows, 1)]
    if Path(path).suffix == ".json":
        return write_json(path, rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns)
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())
