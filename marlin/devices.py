"""The one reading of a device setting: ``auto`` (CUDA when this machine has it, else the CPU), ``cpu``, ``cuda``
or ``cuda:K``, checked against this machine where the setting enters (before any model or data loads)."""
from __future__ import annotations

import torch

from .runtimes import CPU_BACKENDS


def resolve_device(name: str | torch.device | None = "auto", backend: str = "torch",
                   what: str = "device") -> torch.device:
    """The torch.device of ``name`` (None: auto); ``backend``: what runs the model (auto means the CPU for
    `CPU_BACKENDS`). A name torch does not know, or a GPU this machine lacks, is a ValueError naming ``what``
    (the flag or config key) and the value."""
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() and backend not in CPU_BACKENDS else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{what} {name}: not a device (auto, cpu, cuda or cuda:K)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {name}: CUDA is not available here (no GPU visible, or torch built without "
                             f"CUDA); use cpu")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"{what} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
