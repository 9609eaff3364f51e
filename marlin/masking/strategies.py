"""Mask strategies as token priorities: every strategy ranks the tokens of a clip, ties are broken at random,
and the `MaskSpec.num_visible` best-ranked tokens stay visible. Vectorised over the batch, seeded by a
torch.Generator. The strategy and ratio arrive as one checked `MaskSpec`; nothing here checks them again.

Convention (official): mask bool (B, N), True = visible, token index = t*(H'*W') + h*W' + w.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .parts import BACKGROUND, N_FACE_PARTS, SKIN
from .spec import MaskSpec, MaskStrategy

STRATEGIES = tuple(s.value for s in MaskStrategy)  # the names, for command-line choices


def mask_from_ranks(ranks: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, N) integer ranks (lower = kept first) -> bool mask (B, N) with exactly k visible per row."""
    score = ranks.float() + torch.rand(ranks.shape, generator=generator)  # uniform tie-break inside a rank
    idx = score.argsort(dim=1)[:, :k]
    mask = torch.zeros(ranks.shape, dtype=torch.bool)
    return mask.scatter_(1, idx, True)


def part_queue(strategy: MaskStrategy, generator: torch.Generator | None = None) -> list[int]:
    """Order in which part groups are kept visible: fasking (and fasking_inner) keeps background, skin, then the
    parts in random order; fasking_opp the parts in random order, then skin, then background."""
    parts = torch.randperm(N_FACE_PARTS, generator=generator).tolist()
    if strategy in (MaskStrategy.FASKING, MaskStrategy.FASKING_INNER):
        return [BACKGROUND, SKIN] + parts
    return parts + [SKIN, BACKGROUND]


def fasking_ranks(parts: np.ndarray | Tensor, queue: list[int]) -> Tensor:
    """(7, T', H', W') bool group membership -> (N,) rank: position in `queue` of the first group a token is in."""
    member = np.asarray(parts).reshape(len(parts), -1)
    rank = np.full(member.shape[1], len(queue), dtype=np.int64)
    for pos in range(len(queue) - 1, -1, -1):  # earlier groups overwrite later ones
        rank[member[queue[pos]]] = pos
    return torch.from_numpy(rank)


def token_ranks(spec: MaskSpec, batch: int, grid: tuple[int, int, int],
                parts: list[np.ndarray | Tensor | None] | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """(B, N) ranks for ``spec.strategy``; `parts[b]` is sample b's (7, T', H', W') membership (None: random
    masking)."""
    gt, gh, gw = grid
    n = gt * gh * gw
    ranks = torch.zeros(batch, n, dtype=torch.long)
    if spec.strategy is MaskStrategy.TUBE:  # one spatial set of positions, the same for every tubelet
        keep = spec.num_groups(n, gt)
        spatial = mask_from_ranks(torch.zeros(batch, gh * gw), keep, generator)  # (B, H'W')
        ranks = (~spatial).long().repeat(1, gt)
    elif spec.strategy is MaskStrategy.FRAME:  # whole tubelet slices
        keep = spec.num_groups(n, gh * gw)
        chosen = mask_from_ranks(torch.zeros(batch, gt), keep, generator)  # (B, T')
        ranks = (~chosen).long().repeat_interleave(gh * gw, dim=1)
    elif spec.strategy.needs_parts:
        for b in range(batch):
            p = None if parts is None else parts[b]
            queue = part_queue(spec.strategy, generator)
            if p is not None:
                ranks[b] = fasking_ranks(p, queue)
    return ranks


def make_masks(spec: MaskSpec, batch: int, grid: tuple[int, int, int],
               parts: list[np.ndarray | Tensor | None] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Masks (B, N) bool, True = visible, exactly ``spec.num_visible(N)`` per sample."""
    n = grid[0] * grid[1] * grid[2]
    ranks = token_ranks(spec, batch, grid, parts, generator)
    return mask_from_ranks(ranks, spec.num_visible(n), generator)
