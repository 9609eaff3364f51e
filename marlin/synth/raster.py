"""Paint a display list of filled polygons and polylines into an RGB image and a class map (OpenCV)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


@dataclass
class Prim:
    """One drawing operation. ``pts``: (N, 2) pixel coordinates; ``colour``: RGB 0..255 ints (`rgb255`);
    ``cls``: class painted into the parse map (None leaves it unchanged); ``line``: thickness in pixels for
    a polyline (0 = filled); ``clip``: (M, 2) polygon outside which nothing is painted (consecutive
    primitives with the same ``clip`` object share one clip mask); ``closed``: closed polyline."""

    pts: np.ndarray
    colour: list
    cls: int | None = None
    line: float = 0.0
    clip: np.ndarray | None = None
    closed: bool = False


def _fixed(pts: np.ndarray) -> np.ndarray:
    return np.rint(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _draw(img: np.ndarray, fixed: np.ndarray, line: float, closed: bool, colour) -> None:
    """Draw ``fixed`` ((N, 1, 2) int32 points with _SHIFT fractional bits) as a polyline or a filled polygon."""
    if line > 0:
        cv2.polylines(img, [fixed], closed, colour, max(1, int(round(line))), cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillPoly(img, [fixed], colour, cv2.LINE_8, shift=_SHIFT)


def _draw_clipped(img: np.ndarray, group: list, clip: np.ndarray, ss: int) -> None:
    """Draw the primitives ``group`` (all clipped by ``clip``, in order) inside ``clip`` only."""
    h, w = img.shape[:2]
    clip = clip * ss - 0.5
    lo, hi = clip.min(0).tolist(), clip.max(0).tolist()
    x0, y0 = max(math.floor(lo[0]) - 1, 0), max(math.floor(lo[1]) - 1, 0)
    x1, y1 = min(math.ceil(hi[0]) + 2, w), min(math.ceil(hi[1]) + 2, h)
    if x1 <= x0 or y1 <= y0:
        return
    off = np.array([x0, y0], float)
    sub = img[y0:y1, x0:x1]
    tmp = sub.copy()
    for p in group:  # drawn one over the other, then cut out once: the same pixels as cutting out each
        _draw(tmp, _fixed(p.pts * ss - 0.5 - off), p.line * ss, p.closed, p.colour)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(clip - off)], 1, cv2.LINE_8, shift=_SHIFT)
    np.copyto(sub, tmp, where=mask.view(bool)[:, :, None])


def rgb255(rgb) -> list[int]:
    """Colour in [0, 1] -> 0..255 ints (rounded, clipped), in plain Python."""
    return [int(min(max(float(c) * 255 + 0.5, 0.0), 255.0)) for c in rgb]


def paint(img: np.ndarray, parse: np.ndarray | None, prims: list[Prim], ss: int = 1) -> None:
    """Paint ``prims`` in order into ``img`` (ss*S, ss*S, 3) uint8 and ``parse`` (S, S) uint8, in place.

    Points are continuous output-pixel coordinates (pixel i spans [i, i+1)); the image is drawn ``ss``
    times larger (to be downsampled), line widths are in output pixels.
    """
    prims = [p for p in prims if len(p.pts) >= 2]
    if not prims:
        return
    # every point converted to fixed point in one go (elementwise: the same integers as one primitive at a time)
    flat = np.concatenate([p.pts for p in prims])  # (sum N, 2)
    big = _fixed(flat * ss - 0.5)
    small = _fixed(flat - 0.5) if parse is not None else None
    i, end, n = 0, 0, len(prims)
    while i < n:
        p = prims[i]
        j = i + 1
        if p.clip is None:
            _draw(img, big[end:end + len(p.pts)], p.line * ss, p.closed, p.colour)
        else:  # this and the following primitives clipped by the same polygon
            while j < n and prims[j].clip is p.clip:
                j += 1
            _draw_clipped(img, prims[i:j], p.clip, ss)
        for q in prims[i:j]:  # the parse map: filled primitives with a class, in order
            start, end = end, end + len(q.pts)
            if parse is not None and q.cls is not None and q.line == 0:
                cv2.fillPoly(parse, [small[start:end]], int(q.cls), cv2.LINE_8, shift=_SHIFT)
        i = j


def polygon_mask(shape: tuple[int, int], pts: np.ndarray, ss: int = 1) -> np.ndarray:
    """(H, W) bool mask of a filled polygon (continuous output-pixel coordinates, drawn ``ss`` times larger)."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [_fixed(pts * ss - 0.5)], 1, cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)
