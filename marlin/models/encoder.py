"""MARLIN ViT encoder over tubelet tokens."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import MarlinConfig
from .embedding import PatchEmbedding3d, SinCosPositionalEmbedding, TokenIndex
from .layers import init_weights, make_blocks


def check_mask(mask: Tensor, batch: int, num_tokens: int) -> None:
    """A mask is bool (B, N), True = visible, with the same number of visible tokens in every sample."""
    if mask.dtype != torch.bool or tuple(mask.shape) != (batch, num_tokens):
        raise ValueError(f"mask must be a bool tensor of shape ({batch}, {num_tokens}) with True = visible, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    counts = mask.sum(1)
    if batch and not bool((counts == counts[0]).all()):
        raise ValueError(f"every sample must have the same number of visible tokens, got {counts.tolist()}")


class MarlinEncoder(nn.Module):
    """(B, 3, T, H, W) clip -> token features (B, N, D), N = T/2 * H/16 * W/16."""

    def __init__(self, cfg: MarlinConfig):
        super().__init__()
        self.config = cfg
        self.embed_dim = cfg.encoder_embed_dim
        self.patch_embedding = PatchEmbedding3d(cfg.encoder_embed_dim, cfg.patch_size, cfg.tubelet_size)
        self.pos_embedding = SinCosPositionalEmbedding(cfg.num_tokens, cfg.encoder_embed_dim)
        self.norm = nn.LayerNorm(cfg.encoder_embed_dim)
        self.blocks = make_blocks(cfg.encoder_embed_dim, cfg.encoder_depth, cfg.encoder_num_heads, cfg)
        self.blocks.apply(init_weights)

    def embed(self, x: Tensor) -> Tensor:  # (B, 3, T, H, W) -> (B, N, D)
        self._check_clip(x)
        return self.pos_embedding(self.patch_embedding(x))

    def _check_clip(self, x: Tensor) -> None:
        c = self.config
        expected = (3, c.n_frames, c.img_size, c.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected a clip of shape (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"expected a float clip in [0, 1], got dtype {x.dtype} (divide uint8 frames by 255)")

    def forward_features(self, x: Tensor, mask: Tensor | TokenIndex | None = None) -> Tensor:
        """The one pass over the blocks: token features before the final norm, (B, N, D), or (B, N_visible, D)
        (ascending index) with a mask. `forward` norms every token; `extract_features` may pool first."""
        if mask is None:
            emb = self.embed(x)
        else:  # project only the visible tubelets (a quarter or a tenth of them in pretraining)
            self._check_clip(x)
            if isinstance(mask, TokenIndex):  # indices made on the host (training): gathered, no device sync
                mask = mask.visible
            else:
                check_mask(mask, len(x), self.config.num_tokens)
            emb = self.patch_embedding.forward_visible(x, mask) + self.pos_embedding.at(mask, x.dtype)
        for block in self.blocks:
            emb = block(emb)
        return emb

    def forward(self, x: Tensor, mask: Tensor | TokenIndex | None = None) -> Tensor:
        """Visible tokens only (ascending index) after the final norm: (B, N_visible, D)."""
        return self.norm(self.forward_features(x, mask))

    def extract_features(self, x: Tensor, keep_seq: bool = True) -> Tensor:
        """keep_seq: (B, N, D) normed tokens; else (B, D) = norm(mean over tokens) as the official code.

        Under a bf16/fp16 autocast the pooling and the final norm still run in the weights' float32 (they cost
        nothing and shrink the pooled error: docs/performance.md)."""
        emb = self.forward_features(x)
        with torch.autocast(x.device.type, enabled=False):
            emb = emb.to(self.norm.weight.dtype)  # float32 unless the model itself was cast
            if not keep_seq:
                emb = emb.mean(dim=1)
            return self.norm(emb)
