"""Writing pictures a person wants to look at (reconstructions, masks, previews, heat maps)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def save_png(path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG atomically; returns the path."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write PNG")
    os.replace(tmp, path)
    return path
