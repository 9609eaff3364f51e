"""Numeric precision of the encoder: the one set of precision names, what ``auto`` means on this hardware, and
`Precision`, the resolved value that is made once where a setting enters (a command-line flag, a config, a
public API call: `Precision.resolve`) and passed inward to where it is used (`Precision.autocast`) and recorded
(`Precision.name`), without being checked again. Shared by extraction (`marlin.extract`, `marlin extract`, the
downstream feature cache and models, `marlin.deploy`'s runtimes) and pretraining (`Precision.lightning`)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch

NAMES = ("32", "bf16", "16")  # the resolved precisions, as records and caches store them
REQUESTS = ("auto", *NAMES)  # what may be asked for; "auto" resolves per device
ANY_DEVICE = ("auto", "32", "bf16")  # without "16": float16 autocast needs a GPU, settings that also run on CPUs
TRAINABLE = ("32", "bf16")  # what training runs in: float16 would need loss scaling, which no training step does
LIGHTNING = ("32-true", "bf16-mixed", "16-mixed")  # Lightning's names of NAMES, in order
# pretraining's requests: Lightning's names of what trains, or ours
PRETRAIN_REQUESTS = ("auto", *(LIGHTNING[NAMES.index(n)] for n in TRAINABLE), *TRAINABLE)


def check_name(value, allowed=REQUESTS, what: str = "precision") -> str:
    """``value`` as a precision name of ``allowed`` (a subset of `REQUESTS`, or `LIGHTNING` names): the one
    validation of a precision setting (config fields, command-line choices); ValueError naming ``what``."""
    name = str(value)
    if name not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
    return name


@dataclass(frozen=True)
class Precision:
    """A resolved precision: float32 (``FP32``), bfloat16 autocast (``BF16``) or float16 autocast (``FP16``).

    ``name``: "32" | "bf16" | "16", what records store; ``lightning``: Lightning's name ("32-true",
    "bf16-mixed", "16-mixed"); ``dtype``: the autocast dtype (None: float32, no autocast). Made by `resolve`
    (a request, "auto" included, for a device and backend) or `named` (a resolved name read from a record)."""

    name: str
    lightning: str
    dtype: torch.dtype | None

    FP32: ClassVar[Precision]
    BF16: ClassVar[Precision]
    FP16: ClassVar[Precision]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def named(cls, name) -> Precision:
        """The precision a resolved name ("32", "bf16", "16") or Lightning name stands for; ValueError for
        anything else ("auto" included: it is a request, resolved per device by `resolve`)."""
        for p in _ALL:
            if str(name) in (p.name, p.lightning):
                return p
        raise ValueError(f"not a resolved precision: {name!r} (one of {', '.join(NAMES)}; 'auto' is resolved "
                         f"per device by Precision.resolve)")

    @classmethod
    def resolve(cls, requested, device="cpu", backend: str = "torch") -> Precision:
        """The precision ``backend`` runs a request in on ``device``; the one place a request is validated.

        torch: "auto" is bf16 where the device computes bf16 natively (`native_bf16`, also pretraining's rule),
        float32 elsewhere (emulated bf16 is slower than float32); "16" needs a GPU. The runtimes of
        `marlin.deploy` run on the CPU: onnxruntime in float32 only, OpenVINO in float32, or bf16 where its CPU
        plugin computes it ("auto" picks bf16 there). ``requested``: a name of `REQUESTS` or a Lightning name;
        ValueError for one the backend cannot run, MissingExtraError for a runtime that is not installed."""
        if backend != "torch":
            from .runtimes import require_backend

            require_backend(backend)  # a missing runtime is named first (exit 3)
        name = str(requested)
        try:
            named = None if name == "auto" else cls.named(name)
        except ValueError:
            raise ValueError(f"precision must be one of {', '.join(REQUESTS)}, got {requested!r}") from None
        on_gpu = torch.device(device).type != "cpu"
        if backend == "torch":
            if name == "auto":
                return cls.BF16 if native_bf16(on_gpu) else cls.FP32
            if named is cls.FP16 and not on_gpu:
                raise ValueError("precision '16' (float16 autocast) needs a GPU; on a CPU use 'bf16' or 'auto'")
            return named
        if on_gpu:
            raise ValueError(f"the {backend} backend runs on the CPU (device cpu), got device {device}")
        if backend == "onnxruntime":
            if named not in (None, cls.FP32):
                raise ValueError(f"the onnxruntime backend runs float32 only, got precision {name!r} "
                                 f"(bf16: the openvino or torch backend)")
            return cls.FP32
        from .runtimes import openvino_bf16

        if name == "auto":
            return cls.BF16 if openvino_bf16() else cls.FP32
        if named is cls.FP16:
            raise ValueError("precision '16' (float16) needs a GPU; on a CPU use 'bf16' or 'auto'")
        if named is cls.BF16 and not openvino_bf16():
            raise ValueError("OpenVINO computes bf16 only on CPUs with AMX or AVX512-BF16, and this one has "
                             "neither: use precision '32' (or the torch backend, which emulates bf16)")
        return named

    def autocast(self, device):
        """The context that runs the encoder in this precision on ``device``. Float32 on a CPU: none; on a CUDA
        device: TF32 off for matmuls and convolutions (cuDNN allows it by default, for the patch embedding's
        Conv3d), so float32 is float32 on every device and features agree across machines to rounding."""
        device_type = torch.device(device).type
        if self.dtype is None:
            return _no_tf32() if device_type == "cuda" else contextlib.nullcontext()
        return torch.autocast(device_type, dtype=self.dtype)


Precision.FP32 = Precision("32", "32-true", None)
Precision.BF16 = Precision("bf16", "bf16-mixed", torch.bfloat16)
Precision.FP16 = Precision("16", "16-mixed", torch.float16)
_ALL = (Precision.FP32, Precision.BF16, Precision.FP16)
assert tuple(p.name for p in _ALL) == NAMES and tuple(p.lightning for p in _ALL) == LIGHTNING


def native_bf16(on_gpu: bool) -> bool:
    """Whether the device computes bfloat16 natively: CUDA GPUs from Ampere on (not V100 / T4, where bf16 is
    emulated and slower than float16 or float32), other GPUs (MPS), and CPUs with AVX512-BF16 or AMX."""
    if on_gpu:
        if torch.cuda.is_available():
            return _cuda_native_bf16()
        return True
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers; a torch without them gets float32
        return False


def _cuda_native_bf16() -> bool:
    """`torch.cuda.is_bf16_supported(including_emulation=False)`. A torch from before that argument (2.1 and 2.2,
    which `torch>=2.1` allows) raises TypeError on it; the rule it stands for is compute capability 8 or more
    (or ROCm), which is asked directly there."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.version.hip) or torch.cuda.get_device_capability()[0] >= 8


@contextlib.contextmanager
def _no_tf32():
    """TF32 off (matmul and cuDNN) inside, the settings before restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ---- names of earlier releases (public API): thin aliases of the above ----------------------------------------
PRECISIONS = REQUESTS


def resolve_extract_precision(requested, device) -> str:
    """The resolved name of ``requested`` on ``device`` (`Precision.resolve`)."""
    return Precision.resolve(requested, device).name


def precision_context(precision, device):
    """`Precision.autocast` of a resolved name."""
    return Precision.named(precision).autocast(device)
