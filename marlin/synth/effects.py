"""Camera nuisances applied to finished frames: lighting, blur, sensor noise, JPEG compression."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Camera:
    blur: float            # Gaussian sigma as a fraction of the source frame height (0: sharp)
    noise: float           # sensor noise std (0..1 scale)
    jpeg: int              # JPEG quality, 0: none
    crf: int               # H.264 quality of the written clip


def sample_camera(rng: np.random.Generator) -> Camera:
    blur = rng.uniform(0.002, 0.006) if rng.random() < 0.3 else 0.0
    jpeg = int(rng.integers(35, 85)) if rng.random() < 0.3 else 0
    return Camera(blur, float(rng.uniform(0.0, 0.03)), jpeg, int(rng.integers(16, 24)))


def apply(frame: np.ndarray, cam: Camera, gain: float, light, rng: np.random.Generator, origin=(0.0, 0.0),
          px: float = 1.0, source_size=None) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8: lighting, then the camera.

    Output pixel (x, y) sees source point ``origin + (x + 0.5, y + 0.5) * px``; lighting (``gain`` times a
    gradient ``light`` (2,) across the source frame of ``source_size`` (W, H)) and blur are defined in
    source coordinates, so a crop and the full frame it was cut from agree.
    """
    h, w = frame.shape[:2]
    sw, sh = source_size or (w, h)
    gx = ((origin[0] + (np.arange(w, dtype=np.float32) + 0.5) * px) / sw - 0.5)[None, :, None]
    gy = ((origin[1] + (np.arange(h, dtype=np.float32) + 0.5) * px) / sh - 0.5)[:, None, None]
    img = frame * (gain * (1 + light[0] * gx + light[1] * gy))  # float64 (uint8 values are exact in it)
    if cam.blur > 0:
        img = cv2.GaussianBlur(img, (0, 0), cam.blur * sh / px)
    if cam.noise > 0:
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        noise *= np.float32(cam.noise * 255)  # float32 product, as drawn
        img += noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    if cam.jpeg:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out
