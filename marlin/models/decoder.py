"""Light MAE decoder that predicts the raw pixels of the masked tubelets."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import MarlinConfig
from .embedding import SinCosPositionalEmbedding, TokenIndex
from .layers import init_weights, make_blocks


class MarlinDecoder(nn.Module):
    """Visible tokens (B, Nv, Dd) + mask -> pixel predictions for the masked tokens (B, Nm, 3*t*p*p)."""

    def __init__(self, cfg: MarlinConfig):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.norm = nn.LayerNorm(d)
        self.pos_embedding = SinCosPositionalEmbedding(cfg.num_tokens, d)
        self.blocks = make_blocks(d, cfg.decoder_depth, cfg.decoder_num_heads, cfg)
        self.head = nn.Linear(d, cfg.patch_dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, x: Tensor, mask: Tensor | TokenIndex) -> Tensor:
        visible, masked = mask if isinstance(mask, TokenIndex) else (mask, ~mask)
        pos_visible = self.pos_embedding.at(visible, x.dtype)    # (B, N_visible, Dd)
        pos_masked = self.pos_embedding.at(masked, x.dtype)      # (B, N_masked, Dd)
        x = torch.cat([x + pos_visible, self.mask_token.to(x.dtype) + pos_masked], dim=1)  # visible first, then masked
        for block in self.blocks:
            x = block(x)
        n_masked = pos_masked.shape[1]
        return self.head(self.norm(x[:, x.shape[1] - n_masked:]))
