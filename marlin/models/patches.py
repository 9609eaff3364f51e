"""Conversions between clips and per-tubelet pixel vectors (the reconstruction targets).

Patch vector layout is channel-major, as the official targets: index = c*(t*p*p) + pt*(p*p) + ph*p + pw.
"""
from __future__ import annotations

from torch import Tensor


def patchify(video: Tensor, patch_size: int = 16, tubelet_size: int = 2) -> Tensor:
    """(B, C, T, H, W) -> (B, N, C*t*p*p), token index = t*(H/p*W/p) + h*(W/p) + w."""
    b, c, t, h, w = video.shape
    p, tb = patch_size, tubelet_size
    x = video.reshape(b, c, t // tb, tb, h // p, p, w // p, p)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, T', H', W', C, t, p, p)
    return x.reshape(b, (t // tb) * (h // p) * (w // p), c * tb * p * p)


def unpatchify(patches: Tensor, grid: tuple[int, int, int], patch_size: int = 16, tubelet_size: int = 2,
               channels: int = 3) -> Tensor:
    """(B, N, C*t*p*p) -> (B, C, T, H, W) for a token grid (T', H', W')."""
    b = patches.shape[0]
    gt, gh, gw = grid
    p, tb = patch_size, tubelet_size
    x = patches.reshape(b, gt, gh, gw, channels, tb, p, p)
    x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, T', t, H', p, W', p)
    return x.reshape(b, channels, gt * tb, gh * p, gw * p)


def scatter_tokens(visible: Tensor, predicted: Tensor, mask: Tensor) -> Tensor:
    """Merge visible-token values (B, Nv, K) and masked-token predictions (B, Nm, K) into (B, N, K) by `mask`."""
    b, n = mask.shape
    out = visible.new_empty(b, n, visible.shape[-1])
    out[mask] = visible.reshape(-1, visible.shape[-1])
    out[~mask] = predicted.reshape(-1, predicted.shape[-1]).to(out.dtype)
    return out
