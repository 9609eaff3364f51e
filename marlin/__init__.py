"""MARLIN: masked autoencoder for facial video representation learning (CVPR 2023) - a toolkit."""
from .models import Marlin, MarlinConfig, PRESETS

__version__ = "0.1.0"
__all__ = ["Marlin", "MarlinConfig", "PRESETS", "__version__"]
