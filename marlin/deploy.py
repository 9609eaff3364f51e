"""Deploy anywhere: export MARLIN to ONNX / OpenVINO IR, and run exported encoders as extraction backends.

An export is a folder:

- ``model.onnx`` (``--to onnx``) or ``model.xml`` + ``model.bin`` (``--to openvino``, OpenVINO IR);
- ``marlin_export.json``: the model config, the encoder's identity (the `encoder_record` of the checkpoint it
  came from, the one `marlin extract` records), the SHA-256 of every model file, the opset, the inputs and
  outputs, and the parity measured at export time. `load_export` checks the files against it before running.

The feature extractor takes ``clip`` (B, 3, T, H, W) float32 in [0, 1] (batch dynamic) and returns ``tokens``
(B, N, D), the normed per-token features, and ``pooled`` (B, D), the final norm of the mean over tokens, the two
outputs of `Marlin.extract_features` from one pass. ``--full`` exports the reconstruction instead: ``clip`` and
``mask`` (B, N) bool (True = visible, the same count per sample) -> ``reconstruction`` (B, N_masked, 3*t*p*p),
`Marlin.forward`. Graphs are standard ONNX operators (TorchScript exporter, opset 17), no custom operators.

Backends (`marlin extract --backend`, `extract_video(..., backend=...)`): ``torch`` (the model itself),
``onnxruntime`` and ``openvino`` (the runtimes of the ``onnx`` and ``openvino`` extras, on the CPU). A model in
memory is exported once per backend and weights (the runner is kept on the model), an exported folder is run
as it is. Both runtimes use torch's thread count, so backends compare on equal terms.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .errors import MarlinError, require
from .precision import Precision
from .runtimes import require_backend

TARGETS = ("onnx", "openvino")
EXPORT_RECORD = "marlin_export.json"
EXPORT_FORMAT = "marlin-export/1"
OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs difference to torch float32 an export must keep (features are O(1))
_TARGET_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino"}
_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}


def resolve_backend_precision(backend: str, precision, device) -> str:
    """The resolved name of ``precision`` for ``backend`` on ``device`` (`marlin.precision.Precision.resolve`,
    which holds the runtimes' rules)."""
    return Precision.resolve(precision, device, backend).name


# ---- graphs -------------------------------------------------------------------------------------------
class FeatureGraph(nn.Module):
    """The encoder as a feature extractor: clip -> (tokens, pooled), `MarlinEncoder.extract_features` with
    keep_seq True and False from one pass over the blocks (the pooled vector is the norm of the token mean)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, clip: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.encoder.forward_features(clip)
        return self.encoder.norm(emb), self.encoder.norm(emb.mean(dim=1))


class ReconstructionGraph(nn.Module):
    """The full model: (clip, mask) -> pixel predictions of the masked tubelets (`Marlin.forward`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, clip: Tensor, mask: Tensor) -> Tensor:
        return self.model(clip, mask)


def _io(full: bool, cfg) -> tuple[dict, dict]:
    """The inputs and outputs of an exported graph: name -> [dtype, shape] (str entries are dynamic)."""
    clip = ["float32", ["batch", 3, cfg.n_frames, cfg.img_size, cfg.img_size]]
    if full:
        return ({"clip": clip, "mask": ["bool", ["batch", cfg.num_tokens]]},
                {"reconstruction": ["float32", ["batch", "masked", cfg.patch_dim]]})
    return {"clip": clip}, {"tokens": ["float32", ["batch", cfg.num_tokens, cfg.encoder_embed_dim]],
                            "pooled": ["float32", ["batch", cfg.encoder_embed_dim]]}


def _example(cfg, batch: int = 2, full: bool = False, seed: int = 0) -> dict[str, Tensor]:
    """A seeded example input (the parity check's): random clips, and for ``full`` a mask of ~10 % visible."""
    g = torch.Generator().manual_seed(seed)
    x = {"clip": torch.rand(batch, 3, cfg.n_frames, cfg.img_size, cfg.img_size, generator=g)}
    if full:
        visible = max(1, cfg.num_tokens // 10)
        order = torch.stack([torch.randperm(cfg.num_tokens, generator=g) for _ in range(batch)])
        x["mask"] = torch.zeros(batch, cfg.num_tokens, dtype=torch.bool).scatter_(1, order[:, :visible], True)
    return x


def export_onnx(model, path, full: bool = False, opset: int = OPSET) -> Path:
    """Write ``model`` as one ONNX file (the feature extractor, or with ``full`` the reconstruction)."""
    require("onnx", "onnx", "ONNX export")
    if full and model.decoder is None:
        raise MarlinError("--full needs the decoder, and this model holds only the encoder (export without --full, "
                          "or convert a *.full.pt / .ckpt)")
    model = model.cpu().eval()
    graph = ReconstructionGraph(model) if full else FeatureGraph(model.encoder)
    inputs, outputs = _io(full, model.config)
    example = _example(model.config, full=full)
    axes = {n: {i: d for i, d in enumerate(shape) if isinstance(d, str)}
            for n, (_, shape) in {**inputs, **outputs}.items()}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings of shape arithmetic: the batch stays dynamic (tested)
        torch.onnx.export(graph, tuple(example.values()), str(path), dynamo=False, opset_version=opset,
                          input_names=list(inputs), output_names=list(outputs), dynamic_axes=axes)
    return Path(path)


# ---- runners ------------------------------------------------------------------------------------------
def runtime_session(backend: str, path: Path, precision: Precision = Precision.FP32):
    """A callable {input name: array} -> {output name: array} running the model file ``path`` in ``backend``,
    on torch's thread count; OpenVINO in ``precision`` (its CPU plugin would pick bf16 by itself on AMX hosts)."""
    threads = torch.get_num_threads()
    if backend == "onnxruntime":
        ort = require_backend("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        run = lambda feeds: dict(zip(names, session.run(names, feeds)))  # noqa: E731
        run.inputs = {i.name: [d if isinstance(d, int) else None for d in i.shape] for i in session.get_inputs()}
        return run
    ov = require_backend("openvino")
    hint = {Precision.FP32: "f32", Precision.BF16: "bf16"}[precision]
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                          "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    run = lambda feeds: {k.get_any_name(): np.copy(v) for k, v in request.infer(feeds).items()}  # noqa: E731
    run.inputs = {i.get_any_name(): [d.get_length() if d.is_static else None for d in i.get_partial_shape()]
                  for i in compiled.inputs}
    return run


class ExportedModel:
    """An exported MARLIN run by a runtime, with the extraction API of `Marlin` (``config``, ``device``,
    ``eval``, ``extract_features``), so `marlin.extract.video_features` runs it as it runs a torch model."""

    def __init__(self, record: dict, backend: str, run, precision: Precision = Precision.FP32,
                 folder: Path | None = None):
        from .models.config import MarlinConfig

        self.record, self.backend, self.precision, self.folder, self._run = record, backend, precision, folder, run
        self.config = MarlinConfig.from_dict(record["config"], str(folder or "export"))
        self.full = record["parts"] == "full"
        self.device = torch.device("cpu")

    def eval(self) -> "ExportedModel":
        return self

    def __call__(self, **inputs) -> dict[str, np.ndarray]:
        return self._run({k: np.ascontiguousarray(v.numpy() if isinstance(v, Tensor) else v)
                          for k, v in inputs.items()})

    def extract_features(self, x: Tensor, keep_seq: bool = True, precision: Precision | str | None = None) -> Tensor:
        """(B, 3, T, H, W) float in [0, 1] -> (B, N, D) per-token features, or (B, D) pooled ones; ``precision``:
        None or the one this runner computes in (a name is resolved here, the public entry)."""
        if self.full:
            raise MarlinError(f"{self.folder}: a --full export reconstructs; export without --full to extract")
        if precision is not None and not isinstance(precision, Precision):
            precision = Precision.resolve(precision, self.device, self.backend)
        if precision not in (None, self.precision):
            raise ValueError(f"this {self.backend} runner computes in precision {self.precision.name!r}, "
                             f"asked for {precision.name!r}")
        out = self(clip=x.detach().float().cpu())
        return torch.from_numpy(out["tokens" if keep_seq else "pooled"])

    def reconstruct(self, x: Tensor, mask: Tensor) -> Tensor:
        """`Marlin.forward` of a --full export."""
        if not self.full:
            raise MarlinError(f"{self.folder}: this export holds the feature extractor only (export with --full)")
        return torch.from_numpy(self(clip=x.detach().float().cpu(), mask=mask.cpu())["reconstruction"])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def read_export_record(folder) -> dict:
    """The checked record of an export folder: its format, and every model file's SHA-256 as recorded."""
    folder = Path(folder)
    path = folder / EXPORT_RECORD
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise MarlinError(f"{folder}: not a MARLIN export (no {EXPORT_RECORD}; write one with marlin convert "
                          f"--to onnx|openvino)") from None
    except (OSError, ValueError) as e:
        raise MarlinError(f"{path}: unreadable export record ({e})") from None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise MarlinError(f"{path}: not a {EXPORT_FORMAT} record")
    missing = [k for k in ("target", "parts", "config", "encoder", "files") if k not in record]
    if missing:
        raise MarlinError(f"{path}: the export record lacks {', '.join(missing)}")
    for name, digest in record["files"].items():
        file = folder / name
        if not file.is_file():
            raise MarlinError(f"{file}: missing from the export (its record lists it)")
        if _sha256(file) != digest:
            raise MarlinError(f"{file}: differs from the file this export recorded (SHA-256 mismatch): the export "
                              f"was modified; export again with marlin convert")
    return record


def load_export(folder, backend: str | None = None, precision: Precision | str = Precision.FP32) -> ExportedModel:
    """Run an export folder in ``backend`` (default: the runtime it was written for; OpenVINO also runs ONNX
    exports), after checking its files against its record; ``precision``: a `Precision` resolved for ``backend``,
    or a request (resolved here)."""
    folder = Path(folder)
    record = read_export_record(folder)
    backend = backend or _TARGET_BACKEND[record["target"]]
    if backend == "torch" or (backend == "onnxruntime" and record["target"] != "onnx"):
        raise MarlinError(f"{folder}: a {record['target']} export runs in "
                          f"{'onnxruntime or openvino' if record['target'] == 'onnx' else 'openvino'}, "
                          f"not {backend} (the torch backend takes the checkpoint it was exported from)")
    if not isinstance(precision, Precision):
        precision = Precision.resolve(precision, "cpu", backend)
    run = runtime_session(backend, folder / _FILES[record["target"]][0], precision)
    runner = ExportedModel(record, backend, run, precision, folder)
    # the graph takes the clips its recorded config describes (a config edited in the record would not)
    expected = {k: [d if isinstance(d, int) else None for d in shape] for k, (_, shape) in
                _io(runner.full, runner.config)[0].items()}
    if run.inputs != expected:
        raise MarlinError(f"{folder / EXPORT_RECORD}: its config describes inputs {expected}, but the graph "
                          f"takes {run.inputs}: the record does not belong to this model")
    return runner


# ---- export -------------------------------------------------------------------------------------------
def _parity(model, runner: ExportedModel, full: bool) -> dict:
    """Max abs difference of ``runner`` to torch float32 on a seeded batch of 2; MarlinError above tolerance."""
    example = _example(model.config, full=full)
    with torch.no_grad():
        if full:
            clip, mask = example["clip"], example["mask"]
            diffs = {"reconstruction": (runner.reconstruct(clip, mask) - model(clip, mask)).abs().max().item()}
        else:
            tokens, pooled = (model.extract_features(example["clip"], keep_seq=k) for k in (True, False))
            diffs = {"tokens": (runner.extract_features(example["clip"], keep_seq=True) - tokens).abs().max().item(),
                     "pooled": (runner.extract_features(example["clip"], keep_seq=False) - pooled).abs().max().item()}
    worst = max(diffs.values())
    if not worst <= PARITY_TOLERANCE:  # NaN fails too
        raise MarlinError(f"the {runner.backend} export differs from torch by {worst:.3g} (max abs, tolerance "
                          f"{PARITY_TOLERANCE:g}): not written")
    return {"batch": len(example["clip"]), "tolerance": PARITY_TOLERANCE, "max_abs_diff": diffs}


def check_export_out(out) -> Path:
    """An export's folder must be new (or empty): an export never replaces or mixes with files already there."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MarlinError(f"{out}: already exists{' and is not empty' if out.is_dir() else ''}: choose another "
                          f"OUT, or delete it")
    return out


def export(model, out, to: str = "onnx", full: bool = False, encoder: dict | None = None,
           opset: int = OPSET) -> dict:
    """Export ``model`` into the folder ``out`` (``to``: onnx | openvino; ``full``: encoder + decoder for
    reconstruction, else the feature extractor), check it runs within `PARITY_TOLERANCE` of torch, and write its
    record. ``encoder``: the identity of the weights (an `encoder_record`; default the model's weights hash).
    The folder appears complete or not at all; an existing non-empty ``out`` is refused. Returns the record."""
    from ._version import __version__
    from .atomic import atomic_dir, write_json
    from .models.config import model_record

    if to not in TARGETS:
        raise ValueError(f"export target must be one of {', '.join(TARGETS)}, got {to!r}")
    out = check_export_out(out)
    if full and model.decoder is None:
        raise MarlinError(f"{out}: --full needs the decoder, and the input holds only the encoder (export without "
                          f"--full, or convert a *.full.pt / .ckpt)")
    backend = _TARGET_BACKEND[to]
    runtime = require_backend(backend, f"--to {to}")  # before the expensive step
    model = model.cpu().eval()
    record = {"format": EXPORT_FORMAT, "target": to, "parts": "full" if full else "encoder",
              "opset": opset, "config": model.config.to_dict(),
              "encoder": encoder or model_record(model)}
    inputs, outputs = _io(full, model.config)
    record.update(inputs=inputs, outputs=outputs, files={})
    with atomic_dir(out, replace=False) as tmp:
        onnx_path = export_onnx(model, tmp / "model.onnx", full, opset)
        if to == "openvino":
            runtime.save_model(runtime.convert_model(str(onnx_path)), str(tmp / "model.xml"), compress_to_fp16=False)
            onnx_path.unlink()
        record["files"] = {name: _sha256(tmp / name) for name in _FILES[to]}
        runner = ExportedModel(record, backend, runtime_session(backend, tmp / _FILES[to][0]), folder=out)
        record["parity"] = _parity(model, runner, full)
        record["versions"] = {"marlin": __version__, "torch": torch.__version__,
                              backend: getattr(runtime, "__version__", None)}
        write_json(tmp / EXPORT_RECORD, record)
    return record


# model -> {(backend, precision): (weights' identity, runner)}: beside the model, not in it, so that a model that
# ran in a runtime still deep-copies and pickles (runtime sessions do neither), and gone with the model
RUNTIME_MODELS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def runtime_model(model, backend: str, precision: Precision = Precision.FP32) -> ExportedModel:
    """``model`` (a Marlin in memory) as a ``backend`` runner of its feature extractor in ``precision`` (resolved
    for ``backend``: `Precision.resolve`): exported once and kept on the model until its weights change (a
    parameter replaced or changed in place)."""
    # the weights' storage and version counters: load_state_dict / optimiser steps bump them, nothing else runs
    weights = tuple((t.data_ptr(), t._version) for t in model.encoder.state_dict().values())
    cache = RUNTIME_MODELS.setdefault(model, {})
    key = (backend, precision.name)
    if key in cache and cache[key][0] == weights:
        return cache[key][1]
    from .models.config import model_record

    record = {"format": EXPORT_FORMAT, "target": "onnx", "parts": "encoder", "opset": OPSET,
              "config": model.config.to_dict(), "encoder": model_record(model)}
    with tempfile.TemporaryDirectory(prefix="marlin-export-") as tmp:  # the runtimes hold the model once loaded
        path = export_onnx(model, Path(tmp) / "model.onnx")
        runner = ExportedModel(record, backend, runtime_session(backend, path, precision), precision)
    cache[key] = (weights, runner)
    return runner
