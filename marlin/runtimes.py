"""What runs an encoder: torch itself, or the runtimes of the exported model (`marlin.deploy`), which run on the
CPU. Low in the house so that the precision and device rules can ask about the runtimes without the exporter."""
from __future__ import annotations

from .errors import require

BACKENDS = ("torch", "onnxruntime", "openvino")
CPU_BACKENDS = ("onnxruntime", "openvino")  # the exported model's runtimes: CPU only
# what each runtime needs: (module, extra); exporting needs `onnx` (torch's ONNX exporter imports it)
RUNTIMES = {"onnxruntime": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}


def require_backend(backend: str, what: str | None = None):
    """The runtime module of ``backend`` (MissingExtraError naming its extra when it is not installed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        import torch

        return torch
    module, extra = RUNTIMES[backend]
    require("onnx", extra, what or f"the {backend} backend")  # the exporter's; a runtime without it cannot load us
    return require(module, extra, what or f"the {backend} backend")


def openvino_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 on this host (AMX or AVX512-BF16), as it reports."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
