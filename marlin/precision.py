"""Numeric precision of the encoder at inference: which precisions exist, what `auto` means on this hardware,
and the autocast context that runs one. Shared by extraction (`marlin.extract`, `marlin extract`, the
downstream feature cache) and pretraining (`precision: auto` of `marlin.train.runner.resolve_precision`)."""
from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "32", "bf16", "16")  # "16": float16 autocast, GPUs only


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


def resolve_extract_precision(requested: str, device: torch.device | str) -> str:
    """The precision ("32", "bf16" or "16") extraction runs in on ``device``: "auto" is "bf16" where the device
    computes bf16 natively (`native_bf16`, the rule of pretraining's `precision: auto`), "32" elsewhere
    (emulated bf16 is slower than float32). ValueError for an unknown name, or "16" on a CPU."""
    requested = str(requested)
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    on_gpu = torch.device(device).type != "cpu"
    if requested == "auto":
        return "bf16" if native_bf16(on_gpu) else "32"
    if requested == "16" and not on_gpu:
        raise ValueError("precision '16' (float16 autocast) needs a GPU; on a CPU use 'bf16' or 'auto'")
    return requested


def precision_context(precision: str, device: torch.device | str):
    """The context that runs the encoder in a resolved ``precision`` on ``device``. Float32 on a CPU: none; on a
    CUDA device: TF32 off for matmuls and convolutions (cuDNN allows it by default, for the patch embedding's
    Conv3d), so "32" is float32 on every device and features agree across machines to rounding."""
    dtypes = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"not a resolved precision: {precision!r} (resolve 'auto' with `resolve_extract_precision`)")
    if dtypes[precision] is None:
        return _no_tf32() if torch.device(device).type == "cuda" else contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtypes[precision])


@contextlib.contextmanager
def _no_tf32():
    """TF32 off (matmul and cuDNN) inside, the settings before restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
