"""The Wasserstein critic that scores tubelet pixel vectors (real or reconstructed)."""
from __future__ import annotations

from torch import Tensor, nn

from .config import MarlinConfig
from .layers import MLP, init_weights


class Critic(nn.Module):
    """MLP patch_dim -> 4 * decoder width -> 1 with LeakyReLU: (B, N, 1536) -> (B, N, 1)."""

    def __init__(self, cfg: MarlinConfig):
        super().__init__()
        self.layers = MLP([cfg.patch_dim, int(cfg.decoder_embed_dim * 4), 1], nn.LeakyReLU).layers
        self.apply(init_weights)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x
