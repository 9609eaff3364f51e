"""Writing pictures a person wants to look at (reconstructions, masks, previews, heat maps)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def save_png(path, rgb: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG atomically; returns the path. OpenCV writes it where installed
    (the extras), PyAV's PNG encoder on the core install (the same pixels: PNG is lossless)."""
    from .atomic import atomic_path

    try:
        import cv2
    except ImportError:
        return _save_png_av(path, rgb)
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return Path(path)


def _save_png_av(path, rgb: np.ndarray) -> Path:
    import av

    from .atomic import atomic_path

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    with atomic_path(path, suffix=".png") as tmp, av.open(str(tmp), "w", format="image2") as out:
        stream = out.add_stream("png")
        stream.height, stream.width = rgb.shape[:2]
        stream.pix_fmt = "rgb24"
        for packet in [*stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")), *stream.encode()]:
            out.mux(packet)
    return Path(path)
