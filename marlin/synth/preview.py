"""PNG sheets of synthetic items: full frame with the crop box, crop, parse overlay, and the labels."""
from __future__ import annotations

import cv2
import numpy as np

from ..face.preview import sheet
from ..images import save_png
from .clip import render_item
from .labels import ACTION, APPEARANCE, EXPRESSION


def caption(labels: dict) -> list[str]:
    """The labels of an item as short text lines."""
    app = [n for n, v in zip(APPEARANCE, labels["appearance"]) if v]
    act = [n for n, v in zip(ACTION, labels["action"]) if v]
    return [f"appearance: {', '.join(app) or '-'}", f"action: {', '.join(act) or '-'}",
            f"expression: {EXPRESSION[labels['expression']]}   manipulated: {labels['manipulation']}"]


def preview_item(path, seed: int, k: int, frames: int = 16, size: int = 96, fps: float = 25.0, rows: int = 4) -> None:
    """Write a PNG of item ``k`` (rendered again, so without video compression): ``rows`` evenly spaced frames."""
    clip = render_item(seed, k, frames, size, fps, raw=True)
    idx = np.unique(np.linspace(0, frames - 1, rows).round().astype(int)).tolist()
    body = sheet(clip.raw[idx], clip.frames[idx], clip.parse[idx], clip.crop_boxes, [True] * frames, idx)
    lines = caption(clip.labels)
    banner = np.zeros((18 * len(lines) + 6, body.shape[1], 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(banner, line, (4, 16 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    save_png(path, np.concatenate([banner, body], 0))
