"""One pretraining iteration with a single generator forward (used by the Lightning module and the benchmark).

pred = G(x, mask) once; the critic takes `d_steps` steps on (pred.detach(), targets); then the generator loss
rec + adv_weight * (-D(pred)) (D = the updated critic, its weights held fixed) backpropagates through the same
graph. The official loop (`official_loop.py`) recomputes G for every critic and generator step and lets the
critic loss backpropagate into G (gradients it then discards); the updates are the same.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .config import PretrainConfig
from .objective import (
    adversarial_loss,
    critic_loss,
    gradient_penalty,
    masked_pixel_weights,
    masked_targets,
    reconstruction_loss,
)


def forward_losses(model: nn.Module, x: Tensor, mask, cfg: PretrainConfig, features: Tensor | None = None):
    """pred (B, Nm, K), targets (B, Nm, K) and the reconstruction loss for x (B, 3, T, H, W), mask (B, N) or its
    `TokenIndex` (the training step's: no device synchronisation);
    facial-feature pixels `features` (B, T, H, W) weigh `trainer.part_weight` in the loss when given."""
    c = cfg.model
    pred = model(x, mask)
    y = masked_targets(x, mask, c.patch_size, c.tubelet_size, cfg.trainer.norm_target)
    w = None
    if features is not None and cfg.trainer.part_weight != 1.0:
        w = masked_pixel_weights(features, mask, c.patch_size, c.tubelet_size, cfg.trainer.part_weight)
    return pred, y, reconstruction_loss(pred, y, w)


def critic_update(critic: nn.Module, opt, fake: Tensor, real: Tensor, cfg: PretrainConfig, seed: int,
                  last: bool = True, acc: int = 1, reduce: Callable | None = None) -> dict:
    """`d_steps` critic steps on detached samples; gradients via autograd.grad (no DDP hooks), averaged by
    `reduce` across processes, accumulated over `acc` micro-batches (the optimiser steps when `last`)."""
    params = list(critic.parameters())
    out = {}
    for _ in range(cfg.d_steps):
        d_loss, d_fake, d_real = critic_loss(critic, fake, real)
        total = d_loss
        out.update(d_loss=d_loss.detach(), d_fake=d_fake.detach(), d_real=d_real.detach())
        if cfg.gp_weight > 0:
            gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(seed))
            total = d_loss + cfg.gp_weight * gp
            out["gp"] = gp.detach()
        grads = torch.autograd.grad(total / acc, params)
        for p, g in zip(params, grads):
            p.grad = g if p.grad is None else p.grad + g
        if last:
            if reduce is not None:
                reduce([p.grad for p in params])
            if cfg.trainer.grad_clip > 0:
                clip_grad_norm(params, cfg.trainer.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
    return out


def clip_grad_norm(params, max_norm: float) -> Tensor:
    """Scale the gradients of ``params`` so that their global L2 norm is at most ``max_norm``; returns the norm
    before clipping. Sharded gradients (FSDP2 DTensors) count every shard: the squared norms of the local
    shards are summed over the shard group, so every process clips by the norm of the whole model (not of its
    own shard). Replicated gradients (one process, DDP after its all-reduce) give the same norm on every rank."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    plain = [g.detach().float().square().sum() for g in grads if not _is_dtensor(g)]
    shards = [g for g in grads if _is_dtensor(g)]
    total = torch.stack(plain).sum() if plain else torch.zeros((), device=grads[0].device)
    if shards:
        part = torch.stack([g.to_local().detach().float().square().sum() for g in shards]).sum()
        meshes = {g.device_mesh for g in shards}
        if len(meshes) != 1:
            raise RuntimeError("gradient clipping expects every sharded weight on one device mesh (FSDP2)")
        torch.distributed.all_reduce(part, group=meshes.pop().get_group())
        total = total + part
    norm = total.sqrt()
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)  # a tensor: no host synchronisation
    for g in grads:
        (g.to_local() if _is_dtensor(g) else g).mul_(coef.to(g.dtype))
    return norm


def _is_dtensor(t: Tensor) -> bool:
    return type(t).__name__ == "DTensor"


def generator_update(model: nn.Module, opt, grad_clip: float) -> None:
    if grad_clip > 0:
        clip_grad_norm(list(model.parameters()), grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def train_iteration(model: nn.Module, critic: nn.Module, g_opt, d_opt, x: Tensor, mask: Tensor,
                    cfg: PretrainConfig, seed: int = 0, last: bool = True, acc: int = 1,
                    backward: Callable = Tensor.backward, reduce: Callable | None = None,
                    features: Tensor | None = None) -> dict:
    """One (micro-)iteration; returns the detached loss terms. `backward` lets Lightning do the generator's;
    `features` are the facial-feature pixels of x for the part-weighted loss (`forward_losses`)."""
    pred, y, rec = forward_losses(model, x, mask, cfg, features)
    terms = {"rec_loss": rec.detach()}
    loss = rec
    if cfg.adv_loss:
        terms.update(critic_update(critic, d_opt, pred.detach(), y.detach(), cfg, seed, last, acc, reduce))
        adv = adversarial_loss(critic, pred, cfg.adv_weight)
        loss = rec + adv
        terms["adv_loss"] = adv.detach()
    terms["g_loss"] = loss.detach()
    backward(loss / acc)
    if last:
        generator_update(model, g_opt, cfg.trainer.grad_clip)
        for _ in range(cfg.g_steps - 1):  # further generator steps need fresh forwards (the weights changed)
            pred, y, rec = forward_losses(model, x, mask, cfg, features)
            backward(rec + adversarial_loss(critic, pred, cfg.adv_weight) if cfg.adv_loss else rec)
            generator_update(model, g_opt, cfg.trainer.grad_clip)
    return terms
