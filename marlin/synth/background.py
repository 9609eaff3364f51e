"""Procedural backgrounds: gradients with stripes, blobs, tiles or smooth noise (vectorised numpy)."""
from __future__ import annotations

import cv2
import numpy as np

KINDS = ("gradient", "stripes", "blobs", "tiles", "noise")


def background(rng: np.random.Generator, height: int, width: int, unit: float) -> np.ndarray:
    """(height, width, 3) uint8 RGB background; ``unit`` = pixels per face-box size (patterns scale with it).

    Evaluated at half resolution and upsampled: the patterns are smooth at that scale.
    """
    full = (width, height)
    height, width, unit = (height + 1) // 2, (width + 1) // 2, unit / 2
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / unit
    c0, c1 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    ang = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + 0.5 * (np.cos(ang) * (x - x.mean()) + np.sin(ang) * (y - y.mean())), 0, 1)[..., None]
    img = c0 + (c1 - c0) * t
    kind = KINDS[rng.integers(len(KINDS))]
    if kind == "stripes":
        a2, f = rng.uniform(0, np.pi), rng.uniform(1.5, 5)
        img = img + rng.uniform(0.06, 0.18) * np.sin(2 * np.pi * f * (np.cos(a2) * x + np.sin(a2) * y))[..., None] \
            * rng.choice([-1, 1], 3)
    elif kind == "blobs":
        for _ in range(rng.integers(3, 7)):
            cx, cy = rng.uniform(0, width / unit), rng.uniform(0, height / unit)
            r = rng.uniform(0.15, 0.6)
            g = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
            img = img * (1 - 0.8 * g) + rng.uniform(0, 1, 3) * 0.8 * g
    elif kind == "tiles":
        s = rng.uniform(0.25, 0.6)
        check = ((np.floor(x / s) + np.floor(y / (s * rng.uniform(0.5, 1.0)))) % 2)[..., None]
        img = img * (1 - 0.15 * check) + 0.15 * check * rng.uniform(0, 1, 3)
    elif kind == "noise":
        g = rng.uniform(0, 1, (max(2, int(height / unit * 6)), max(2, int(width / unit * 6)), 3)).astype(np.float32)
        img = img * 0.75 + 0.25 * cv2.resize(g, (width, height), interpolation=cv2.INTER_CUBIC)
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return cv2.resize(img, full, interpolation=cv2.INTER_LINEAR)
