"""PNG previews: rows of frames side by side (training samples, inference results)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path


def write_grid(path, rows: list[np.ndarray], max_cols: int = 16) -> Path:
    """Rows of (N, H, W, 3) uint8 frames -> one PNG (atomic). Rows are cut to ``max_cols`` frames."""
    import cv2

    path = Path(path)
    n = min(max_cols, min(len(r) for r in rows))
    h, w = rows[0].shape[1:3]
    grid = np.concatenate([np.concatenate([cv2.resize(f, (w, h)) for f in r[:n]], axis=1) for r in rows], axis=0)
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the PNG")
    return path


def to_uint8(x) -> np.ndarray:
    """(..., 3, H, W) float tensor in [0, 1] -> (..., H, W, 3) uint8."""
    return x.detach().clamp(0, 1).mul(255).round().byte().movedim(-3, -1).cpu().numpy()
