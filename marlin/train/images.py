"""Pictures written during pretraining: original | masked | reconstruction sheets, as PNG."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from ..images import save_png
from ..models.config import MarlinConfig
from ..models.patches import patchify, unpatchify


def _shown_frames(visible_per_tubelet: np.ndarray, frames: int, tubelet_size: int) -> list[int]:
    """First frames of `frames` evenly spaced tubelets, the one with the most visible tokens swapped in."""
    n = len(visible_per_tubelet)
    picks = list(np.linspace(0, n - 1, min(frames, n)).round().astype(int))
    best = int(np.argmax(visible_per_tubelet))
    if best not in picks:
        picks[int(np.argmin([abs(t - best) for t in picks]))] = best
    return [t * tubelet_size for t in sorted(set(picks))]


def reconstruction_sheet(x: Tensor, mask: Tensor, pred: Tensor, geometry: MarlinConfig, frames: int = 4) -> np.ndarray:
    """Rows original | masked | reconstruction for a few frames of ONE clip (the first frame of evenly spaced
    tubelets, always including the tubelet with the most visible tokens, so frame masking shows a visible frame).

    x: (3, T, S, S) in [0, 1], a clip of the model's ``geometry``; mask: (N,) bool visible; pred: (N_masked, K)
    raw-pixel predictions.
    """
    grid, patch_size, tubelet_size = geometry.grid, geometry.patch_size, geometry.tubelet_size
    x = x.detach().float().cpu()[None]
    mask = mask.cpu()[None]
    patches = patchify(x, patch_size, tubelet_size)  # (1, N, K)
    masked, recon = patches.clone(), patches.clone()
    masked[~mask] = 0.5
    recon[~mask] = pred.detach().float().cpu().reshape(-1, patches.shape[-1])
    views = [unpatchify(v, grid, patch_size, tubelet_size)[0] for v in (patches, masked, recon)]  # (3, T, H, W)
    shown = _shown_frames(mask[0].reshape(grid[0], -1).sum(1).numpy(), frames, tubelet_size)
    rows = []
    for t in shown:
        tiles = [(v[:, t].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for v in views]
        rows.append(np.concatenate([np.pad(tl, ((1, 1), (1, 1), (0, 0)), constant_values=255) for tl in tiles], 1))
    sheet = np.concatenate(rows, 0)
    scale = max(1, 160 // geometry.img_size)
    return cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST) if scale > 1 else sheet


@torch.no_grad()
def save_reconstruction(path, x: Tensor, mask: Tensor, pred: Tensor, geometry: MarlinConfig, frames: int = 4) -> Path:
    """PNG of `reconstruction_sheet` for the first clip of a batch (x (B,3,T,S,S), mask (B,N), pred (B,Nm,K))."""
    return save_png(path, reconstruction_sheet(x[0], mask[0], pred[0], geometry, frames))
