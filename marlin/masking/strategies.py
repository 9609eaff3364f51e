"""Mask strategies as token priorities: every strategy ranks the tokens of a clip, ties are broken at random,
and the `num_visible` best-ranked tokens stay visible. Vectorised over the batch, seeded by a torch.Generator.

Convention (official): mask bool (B, N), True = visible, token index = t*(H'*W') + h*W' + w.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .parts import BACKGROUND, N_FACE_PARTS, SKIN

STRATEGIES = ("fasking", "fasking_opp", "random", "tube", "frame")


def num_visible(num_tokens: int, ratio: float) -> int:
    """Visible tokens per sample at mask ratio `ratio` (156 of 1568 at 0.9), as the official code."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return int(num_tokens * (1 - ratio))


def mask_from_ranks(ranks: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """(B, N) integer ranks (lower = kept first) -> bool mask (B, N) with exactly k visible per row."""
    score = ranks.float() + torch.rand(ranks.shape, generator=generator)  # uniform tie-break inside a rank
    idx = score.argsort(dim=1)[:, :k]
    mask = torch.zeros(ranks.shape, dtype=torch.bool)
    return mask.scatter_(1, idx, True)


def part_queue(strategy: str, generator: torch.Generator | None = None) -> list[int]:
    """Order in which part groups are kept visible: fasking keeps background, skin, then the parts in random order."""
    parts = torch.randperm(N_FACE_PARTS, generator=generator).tolist()
    if strategy == "fasking":
        return [BACKGROUND, SKIN] + parts
    if strategy == "fasking_opp":
        return parts + [SKIN, BACKGROUND]
    raise ValueError(f"{strategy!r} has no part queue")


def fasking_ranks(parts: np.ndarray | Tensor, queue: list[int]) -> Tensor:
    """(7, T', H', W') bool group membership -> (N,) rank: position in `queue` of the first group a token is in."""
    member = np.asarray(parts).reshape(len(parts), -1)
    rank = np.full(member.shape[1], len(queue), dtype=np.int64)
    for pos in range(len(queue) - 1, -1, -1):  # earlier groups overwrite later ones
        rank[member[queue[pos]]] = pos
    return torch.from_numpy(rank)


def token_ranks(strategy: str, batch: int, grid: tuple[int, int, int], ratio: float,
                parts: list[np.ndarray | Tensor | None] | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """(B, N) ranks for `strategy`; `parts[b]` is sample b's (7, T', H', W') membership (None: random masking)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown mask strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    gt, gh, gw = grid
    n = gt * gh * gw
    ranks = torch.zeros(batch, n, dtype=torch.long)
    if strategy == "tube":  # one spatial set of ceil(H'W'(1-r)) positions for every tubelet
        keep = math.ceil(gh * gw * (1 - ratio))
        spatial = mask_from_ranks(torch.zeros(batch, gh * gw), keep, generator)  # (B, H'W')
        ranks = (~spatial).long().repeat(1, gt)
    elif strategy == "frame":  # whole tubelets: ceil(T'(1-r)) of them
        keep = math.ceil(gt * (1 - ratio))
        chosen = mask_from_ranks(torch.zeros(batch, gt), keep, generator)  # (B, T')
        ranks = (~chosen).long().repeat_interleave(gh * gw, dim=1)
    elif strategy in ("fasking", "fasking_opp"):
        for b in range(batch):
            p = None if parts is None else parts[b]
            queue = part_queue(strategy, generator)
            if p is not None:
                ranks[b] = fasking_ranks(p, queue)
    return ranks


def make_masks(strategy: str, batch: int, grid: tuple[int, int, int], ratio: float = 0.9,
               parts: list[np.ndarray | Tensor | None] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
    """Masks (B, N) bool, True = visible, exactly `num_visible(N, ratio)` per sample."""
    n = grid[0] * grid[1] * grid[2]
    ranks = token_ranks(strategy, batch, grid, ratio, parts, generator)
    return mask_from_ranks(ranks, num_visible(n, ratio), generator)
