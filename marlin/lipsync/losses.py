"""Wav2Lip's generator objective: (1 - s - d) * L1 + s * expert sync loss + d * visual-quality GAN loss
(s = 0.03, d = 0.07 in Wav2Lip), and the discriminator's BCE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import lower_half
from .syncnet import expert_loss

SYNC_WT = 0.03
DISC_WT = 0.07


def generator_losses(out: Tensor, target: Tensor, sync_mels: Tensor, syncnet, disc,
                     sync_wt: float = SYNC_WT, disc_wt: float = DISC_WT) -> dict[str, Tensor]:
    """out, target (B, T, 3, S, S); sync_mels (B, T/w, 1, 80, m) -> {"total", "l1", "sync", "gan"}."""
    l1 = F.l1_loss(out, target)
    zero = out.new_zeros(())
    sync = expert_loss(syncnet, lower_half(out), sync_mels) if syncnet is not None else zero  # logged at weight 0
    gan = zero
    if disc is not None and disc_wt > 0:
        p = disc(lower_half(out).flatten(0, 1))
        gan = F.binary_cross_entropy(p, torch.ones_like(p))
    return {"total": (1 - sync_wt - disc_wt) * l1 + sync_wt * sync + disc_wt * gan, "l1": l1, "sync": sync, "gan": gan}


def discriminator_loss(disc, out: Tensor, target: Tensor) -> Tensor:
    """BCE: real lower halves -> 1, generated (detached) -> 0."""
    real = disc(lower_half(target).flatten(0, 1))
    fake = disc(lower_half(out.detach()).flatten(0, 1))
    return F.binary_cross_entropy(real, torch.ones_like(real)) + F.binary_cross_entropy(fake, torch.zeros_like(fake))
