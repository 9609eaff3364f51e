"""The official MARLIN training iteration (model/marlin.py `training_step`), reproduced for verification and
benchmarking only: a full generator forward for every critic step and every generator step, and the critic
loss backpropagating through the generator."""
from __future__ import annotations

from torch import Tensor, nn

from .config import PretrainConfig
from .objective import critic_loss, gradient_penalty
from .step import forward_losses


def official_iteration(model: nn.Module, critic: nn.Module, g_opt, d_opt, x: Tensor, mask: Tensor,
                       cfg: PretrainConfig) -> dict:
    """d_steps x (forward G, critic loss, backward through G and D, critic step), then g_steps x (forward G,
    rec + adv, backward, generator step). Returns the last detached losses."""
    out = {}
    for _ in range(cfg.d_steps):
        d_opt.zero_grad()
        pred, y, _ = forward_losses(model, x, mask, cfg)
        d_loss, _, _ = critic_loss(critic, pred, y)
        total = d_loss + cfg.gp_weight * gradient_penalty(critic, y, pred) if cfg.gp_weight > 0 else d_loss
        total.backward()
        d_opt.step()
        out["d_loss"] = d_loss.detach()
    for _ in range(cfg.g_steps):
        g_opt.zero_grad()
        pred, y, rec = forward_losses(model, x, mask, cfg)
        adv = cfg.adv_weight * -critic(pred).mean()
        (rec + adv).backward()
        g_opt.step()
        out.update(rec_loss=rec.detach(), adv_loss=adv.detach())
    return out
