"""Tubelet patch embedding and the fixed sine-cosine positional table."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .patches import patchify


def sincos_table(num_positions: int, dim: int) -> Tensor:
    """(1, N, D) table: even channels sin(p / 10000^(2i/D)), odd channels cos (VideoMAE convention).

    Built in float64 with NumPy exactly as the official and VideoMAE code build it (same values, bit for bit), not
    with torch: torch's multi-threaded float64 sin/cos gave another table (1 float32 ulp at ~40 entries of a
    128 x 192 table) in some processes, so the same seed pretrained another encoder."""
    denominators = np.array([np.power(10000, 2 * (j // 2) / dim) for j in range(dim)])  # (D,), as the official code
    table = np.arange(num_positions)[:, None] / denominators  # (N, D) angles
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float()[None]


class SinCosPositionalEmbedding(nn.Module):
    """Adds the fixed table; stored as a buffer named `emb` (key layout of the official checkpoints)."""

    def __init__(self, num_positions: int, dim: int):
        super().__init__()
        self.register_buffer("emb", sincos_table(num_positions, dim))

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        return x + self.emb.to(x.dtype)

    def at(self, mask: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """The positions of the tokens where `mask` (B, N) is True, in ascending index: (B, n, D); every row of
        `mask` must hold the same number n of True entries. `mask` may also be token indices (B, n) int64
        (a field of `TokenIndex`): then they are gathered, with no device synchronisation."""
        # shape[0], not len(): an ONNX export traces it, so the exported batch stays dynamic (marlin.deploy)
        pos = self.emb.to(dtype or self.emb.dtype).expand(mask.shape[0], -1, -1)
        if mask.dtype != torch.bool:
            return select_tokens(pos, mask)
        return pos[mask].view(mask.shape[0], -1, pos.shape[-1])


class TokenIndex(NamedTuple):
    """A mask as token indices: `visible` (B, Nv) and `masked` (B, Nm) int64, each row ascending. Made once on
    the host (`token_index`), it lets a training step select tokens with `gather`: boolean indexing has a
    data-dependent shape, so on a GPU it waits for the device to report the count, several times a step."""

    visible: Tensor
    masked: Tensor


def token_index(mask: Tensor) -> TokenIndex:
    """The `TokenIndex` of a bool mask (B, N), True = visible, with the same count per row (ValueError if not)."""
    counts = mask.sum(1)
    if mask.dtype != torch.bool or mask.ndim != 2 or not bool((counts == counts[:1]).all()):
        raise ValueError(f"a mask is bool (B, N) with the same number of visible tokens per row, got {mask.dtype} "
                         f"{tuple(mask.shape)}, counts {counts.tolist()}")
    n = int(counts[0]) if len(mask) else 0
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)  # visible first, each part ascending
    return TokenIndex(order[:, :n].contiguous(), order[:, n:].contiguous())


def select_tokens(x: Tensor, index: Tensor) -> Tensor:
    """x (B, N, K), index (B, n) int64 -> (B, n, K): the rows of each sample at its indices."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class PatchEmbedding3d(nn.Module):
    """(B, 3, T, H, W) -> (B, T/t * H/p * W/p, D); token index = t*(H/p*W/p) + h*(W/p) + w."""

    def __init__(self, dim: int, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3):
        super().__init__()
        k = (tubelet_size, patch_size, patch_size)
        self.projection = nn.Conv3d(in_chans, dim, kernel_size=k, stride=k)
        w = self.projection.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.projection.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 5 or x.shape[1] != self.projection.in_channels:
            raise ValueError(f"expected a clip of shape (B, 3, T, H, W), got {tuple(x.shape)}")
        return self.projection(x).flatten(2).transpose(1, 2)

    def forward_visible(self, x: Tensor, mask: Tensor) -> Tensor:
        """Embeds only the visible tubelets: (B, 3, T, H, W), bool (B, N) with the same count per row (or the
        visible indices (B, N_visible) of a `TokenIndex`) -> (B, N_visible, D), equal to forward(x)[mask] without
        projecting the masked ones."""
        kt, kh, _ = self.projection.kernel_size
        patches = patchify(x, kh, kt)  # (B, N, C*kt*kh*kw): the order of the Conv3d weight
        if mask.dtype != torch.bool:  # visible token indices (B, N_visible), `TokenIndex.visible`
            visible = select_tokens(patches, mask)
        else:
            visible = patches[mask].view(x.shape[0], -1, patches.shape[-1])  # shape[0]: traced (see `at`)
        weight = self.projection.weight.reshape(self.projection.out_channels, -1)
        return nn.functional.linear(visible, weight, self.projection.bias)
