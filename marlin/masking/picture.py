"""A PNG that shows what each mask strategy hides: one row per strategy, one column per shown tubelet."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ..models.config import MarlinConfig
from .parts import token_parts
from .spec import MaskSpec, MaskStrategy
from .strategies import make_masks


def mask_overlay(frame: np.ndarray, visible: np.ndarray, patch_size: int) -> np.ndarray:
    """(S, S, 3) uint8 frame, (S/p, S/p) bool visible patches -> frame with masked patches greyed out."""
    keep = np.kron(visible.astype(np.uint8), np.ones((patch_size, patch_size), np.uint8)).astype(bool)
    out = frame.astype(np.float32)
    out[~keep] = out[~keep] * 0.2 + 100
    return out.astype(np.uint8)


def mask_picture(frames: np.ndarray, parse: np.ndarray | None, geometry: MarlinConfig, ratio: float = 0.9,
                 strategies: Sequence[MaskStrategy] = tuple(MaskStrategy), columns: int = 4, seed: int = 0,
                 scale: int = 1) -> np.ndarray:
    """(H, W, 3) uint8 RGB sheet for a clip of the model's geometry: frames (T, S, S, 3) uint8, parse (T, S, S)
    uint8 or None; every strategy at mask ratio ``ratio``."""
    grid, p, tb, s = geometry.grid, geometry.patch_size, geometry.tubelet_size, geometry.img_size
    first = None if parse is None else parse[::tb][:grid[0]]  # each tubelet's first frame
    parts: dict[str, np.ndarray] = {}
    shown = np.linspace(0, grid[0] - 1, min(columns, grid[0])).round().astype(int)
    label_w = 110
    rows = []
    for strategy in strategies:
        g = torch.Generator().manual_seed(seed)
        spec = MaskSpec(strategy, ratio)
        membership = spec.strategy.membership
        if first is not None and membership not in parts:  # one membership map per rule, not per strategy
            parts[membership] = token_parts(first, p, membership)
        mask = make_masks(spec, 1, grid, [parts.get(membership)], g)[0].view(grid).numpy()  # (T', H', W')
        tiles = [mask_overlay(frames[k * tb], mask[k], p) for k in shown]
        row = np.concatenate([np.pad(tl, ((2, 2), (2, 2), (0, 0)), constant_values=255) for tl in tiles], 1)
        if scale != 1:
            row = cv2.resize(row, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        label = np.full((row.shape[0], label_w, 3), 255, np.uint8)
        cv2.putText(label, str(strategy), (4, row.shape[0] // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        rows.append(np.concatenate([label, row], 1))
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for j, k in enumerate(shown):
        x = label_w + j * (s + 4) * scale + 4
        cv2.putText(header, f"frame {k * tb}", (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return np.concatenate([header] + rows, 0)


def save_mask_picture(path, frames: np.ndarray, parse: np.ndarray | None, geometry: MarlinConfig,
                      ratio: float = 0.9, strategies: Sequence[MaskStrategy] = tuple(MaskStrategy),
                      columns: int = 4, seed: int = 0) -> Path:
    """Write `mask_picture` as a PNG (small crops are enlarged so patches stay visible); returns the path."""
    from ..images import save_png

    scale = max(1, 160 // geometry.img_size)
    return save_png(path, mask_picture(frames, parse, geometry, ratio, strategies, columns, seed, scale))
