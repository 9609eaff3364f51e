"""PNG preview sheets: for a few frames, the source frame with its box, the crop, and the parse overlay."""
from __future__ import annotations


import cv2
import numpy as np

from ..images import save_png

# one RGB colour per LaPa class (marlin.data.layout.PARSE_CLASSES order)
PALETTE = np.array([[0, 0, 0], [255, 204, 153], [0, 200, 0], [0, 110, 0], [40, 80, 255], [0, 0, 140],
                    [255, 230, 0], [255, 0, 0], [150, 0, 150], [170, 0, 40], [120, 70, 20]], np.uint8)


def overlay(crop: np.ndarray, parse: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """(S, S, 3) uint8 crop + (S, S) classes -> (S, S, 3) uint8 blend."""
    return (crop * (1 - alpha) + PALETTE[parse] * alpha).astype(np.uint8)


def sheet(source_frames, crops, parses, boxes, found, indices) -> np.ndarray:
    """Rows of [source frame with box (green: face found, red: held), crop, parse overlay]; (H, W, 3) RGB.

    ``source_frames``, ``crops`` (S, S, 3), ``parses`` (S, S) or None: one per row; ``boxes`` (T, 4) and
    ``found`` (T,) for the whole clip, indexed by ``indices``."""
    s = crops[0].shape[0]
    rows = []
    for src, c, par, i in zip(source_frames, crops, parses if parses is not None else [None] * len(crops), indices):
        img = np.ascontiguousarray(src)
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[i])
        colour = (0, 255, 0) if found[i] else (255, 0, 0)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, max(1, img.shape[0] // 200))
        k = s / img.shape[0]
        img = cv2.resize(img, (max(1, round(img.shape[1] * k)), s), interpolation=cv2.INTER_AREA)
        cv2.putText(img, f"frame {i}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1)
        parts = [img, c] + ([] if par is None else [overlay(c, par)])
        rows.append(np.concatenate(parts, 1))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows], 0)




def item_preview(path, item, k: int = 4) -> None:
    """A PNG sheet of ``k`` evenly spaced frames of a written item (``marlin.data.layout.FaceItem``)."""
    from .source import open_source

    idx = np.unique(np.linspace(0, item.num_frames - 1, k).round().astype(int)).tolist()
    src = []
    for i, f in enumerate(open_source(item.meta["source"]).frames()):
        if i in idx:
            src.append(f)
        if i >= idx[-1]:
            break
    parse = item.read_parse(idx)
    save_png(path, sheet(src, item.read_frames(idx), parse, np.asarray(item.meta["boxes"]),
                         item.meta["face_found"], idx[:len(src)]))
