"""MARLIN: masked autoencoder for facial video representation learning (CVPR 2023) - a toolkit.

`Marlin`, `MarlinConfig` and `PRESETS` are imported lazily, so light tools (synth workers, the CLI's help)
do not pay for importing torch.
"""
from ._version import __version__

__all__ = ["Marlin", "MarlinConfig", "PRESETS", "__version__"]


def __getattr__(name):
    if name in ("Marlin", "MarlinConfig", "PRESETS"):
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'marlin' has no attribute {name!r}")
