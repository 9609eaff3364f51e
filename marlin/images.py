"""Writing pictures a person wants to look at (reconstructions, masks, previews, heat maps)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_png(path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG atomically; returns the path."""
    import cv2

    from .atomic import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return Path(path)
