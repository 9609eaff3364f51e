"""The MARLIN pretraining objective: masked-tubelet reconstruction + Wasserstein adversarial terms."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.embedding import TokenIndex, select_tokens
from ..models.patches import patchify


def masked_targets(x: Tensor, mask: Tensor | TokenIndex, patch_size: int, tubelet_size: int,
                   normalize: bool = False) -> Tensor:
    """True pixels of the masked tubelets, ascending token order: x (B, 3, T, H, W), mask (B, N) or its
    `TokenIndex` -> (B, Nm, K).

    `normalize` standardises each patch per colour channel (VideoMAE's per-patch normalised targets).
    """
    y = patchify(x, patch_size, tubelet_size)  # (B, N, K) channel-major
    if normalize:
        b, n, k = y.shape
        yc = y.view(b, n, 3, k // 3)
        y = ((yc - yc.mean(-1, keepdim=True)) / (yc.var(-1, unbiased=True, keepdim=True).sqrt() + 1e-6)).view(b, n, k)
    if isinstance(mask, TokenIndex):  # gather: no device synchronisation
        return select_tokens(y, mask.masked)
    b, _, k = y.shape
    return y[~mask].view(b, -1, k)


def masked_pixel_weights(features: Tensor, mask: Tensor, patch_size: int, tubelet_size: int,
                         weight: float) -> Tensor:
    """Per-pixel loss weights of the masked tubelets: `weight` on facial-feature pixels, 1 elsewhere.

    features (B, T, H, W) bool (`marlin.masking.feature_pixels` of the clip's parse maps), mask (B, N)
    -> (B, Nm, t*p*p), pixels in the order of one colour channel of `masked_targets` (shared by the channels).
    """
    w = 1.0 + (weight - 1.0) * features.float()
    return masked_targets(w[:, None], mask, patch_size, tubelet_size)  # the weights as a one-channel clip


def denormalize_predictions(pred: Tensor, x: Tensor, mask: Tensor, patch_size: int, tubelet_size: int) -> Tensor:
    """Undo per-patch normalisation with the true patch statistics (for pictures): (B, Nm, K) -> raw pixels."""
    y = masked_targets(x, mask, patch_size, tubelet_size)
    b, n, k = y.shape
    yc = y.view(b, n, 3, k // 3)
    mean, std = yc.mean(-1, keepdim=True), yc.var(-1, unbiased=True, keepdim=True).sqrt() + 1e-6
    return (pred.view(b, n, 3, k // 3) * std + mean).view(b, n, k)


def reconstruction_loss(pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean squared error over all elements (official `MSELoss`), or its per-pixel `weight`-weighted mean:
    weight (B, Nm, K/3) from `masked_pixel_weights`, sum w * err^2 / sum w over pixels and colour channels (so a
    uniform weight gives the plain mean)."""
    if weight is None:
        return F.mse_loss(pred.float(), target.float())
    b, n, k = target.shape
    err = (pred.float() - target.float()).square().view(b, n, 3, k // 3).sum(2)  # (B, Nm, K/3): over channels
    return (weight * err).sum() / (3 * weight.sum())


def critic_loss(critic: nn.Module, fake: Tensor, real: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Wasserstein critic loss mean D(fake) - mean D(real); also returns both means. fake/real: (B, Nm, K)."""
    d_fake = critic(fake).float().mean()
    d_real = critic(real).float().mean()
    return d_fake - d_real, d_fake, d_real


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP on one random interpolation (one alpha per batch, as the official code): mean (|grad| - 1)^2."""
    alpha = torch.rand(1, generator=generator).to(real.device)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    score = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.reshape(-1, grad.shape[-1]).norm(2, dim=1) - 1) ** 2).mean()


def adversarial_loss(critic: nn.Module, pred: Tensor, weight: float) -> Tensor:
    """Generator term weight * (-mean D(pred)); the critic's parameters get no gradient from it."""
    params = {k: v.detach() for k, v in critic.named_parameters()}
    score = torch.func.functional_call(critic, params, (pred,))
    return weight * (-score.float().mean())
