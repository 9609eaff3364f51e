"""Per-iteration learning-rate schedule: linear warm-up, then cosine decay to the minimum."""
from __future__ import annotations

import math


def lr_at(step: int, base: float, warmup_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Learning rate of iteration `step` (0-based); constant `min_lr` after `total_steps`."""
    if step < warmup_steps:
        return warmup_lr + (base - warmup_lr) * step / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    t = min(step - warmup_steps, span) / span
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * t))


def scaled_lrs(base: float, warmup: float, minimum: float, global_batch: int) -> tuple[float, float, float]:
    """Official linear scaling: every rate x global batch / 256."""
    k = global_batch / 256
    return base * k, warmup * k, minimum * k
