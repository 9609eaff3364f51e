"""Paint a display list of filled polygons and polylines into an RGB image and a class map (OpenCV)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


@dataclass
class Prim:
    """One drawing operation. ``pts``: (N, 2) pixel coordinates; ``cls``: class painted into the
    parse map (None leaves it unchanged); ``line``: thickness in pixels for a polyline (0 = filled);
    ``clip``: (M, 2) polygon outside which nothing is painted; ``closed``: closed polyline."""

    pts: np.ndarray
    colour: tuple
    cls: int | None = None
    line: float = 0.0
    clip: np.ndarray | None = None
    closed: bool = False


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.rint(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _draw(img: np.ndarray, pts: np.ndarray, line: float, closed: bool, colour) -> None:
    if line > 0:
        cv2.polylines(img, [_fixed(pts)], closed, colour, max(1, int(round(line))), cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(img, [_fixed(pts)], colour, cv2.LINE_8, shift=_SHIFT)


def _draw_clipped(img: np.ndarray, pts: np.ndarray, clip: np.ndarray, line: float, closed: bool, colour) -> None:
    h, w = img.shape[:2]
    lo = np.floor(clip.min(0)).astype(int) - 1
    hi = np.ceil(clip.max(0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 <= x0 or y1 <= y0:
        return
    off = np.array([x0, y0], float)
    sub = img[y0:y1, x0:x1]
    tmp = sub.copy()
    _draw(tmp, pts - off, line, closed, colour)
    mask = np.zeros(sub.shape[:2], np.uint8)
    cv2.fillPoly(mask, [_fixed(clip - off)], 1, cv2.LINE_8, shift=_SHIFT)
    m = mask.astype(bool)
    sub[m] = tmp[m]


def _colour(rgb) -> list[int]:
    """Colour in [0, 1] -> 0..255 ints (rounded, clipped), in plain Python: this runs for every primitive."""
    return [int(min(max(float(c) * 255 + 0.5, 0.0), 255.0)) for c in rgb]


def paint(img: np.ndarray, parse: np.ndarray | None, prims: list[Prim], ss: int = 1) -> None:
    """Paint ``prims`` in order into ``img`` (ss*S, ss*S, 3) uint8 and ``parse`` (S, S) uint8, in place.

    Points are continuous output-pixel coordinates (pixel i spans [i, i+1)); the image is drawn ``ss``
    times larger (to be downsampled), line widths are in output pixels.
    """
    for p in prims:
        if len(p.pts) < 2:
            continue
        colour = _colour(p.colour)
        pts = p.pts * ss - 0.5
        if p.clip is not None:
            _draw_clipped(img, pts, p.clip * ss - 0.5, p.line * ss, p.closed, colour)
        else:
            _draw(img, pts, p.line * ss, p.closed, colour)
        if parse is not None and p.cls is not None and p.line == 0:
            cv2.fillPoly(parse, [_fixed(p.pts - 0.5)], int(p.cls), cv2.LINE_8, shift=_SHIFT)


def polygon_mask(shape: tuple[int, int], pts: np.ndarray, ss: int = 1) -> np.ndarray:
    """(H, W) bool mask of a filled polygon (continuous output-pixel coordinates, drawn ``ss`` times larger)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [_fixed(pts * ss - 0.5)], 1, cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)
