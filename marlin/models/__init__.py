"""MARLIN model parts: config presets, encoder, decoder, critic, patch helpers, the Marlin wrapper and its Hugging
Face formats (`marlin.models.hf`)."""
from .config import PRESETS, MarlinConfig, resolve_config, config_from_yaml_dict
from .critic import Critic
from .decoder import MarlinDecoder
from .encoder import MarlinEncoder, check_mask
from .marlin import Marlin
from .patches import patchify, unpatchify, scatter_tokens

__all__ = ["PRESETS", "MarlinConfig", "resolve_config", "config_from_yaml_dict", "Critic", "MarlinDecoder",
           "MarlinEncoder", "check_mask", "Marlin", "patchify", "unpatchify", "scatter_tokens"]
