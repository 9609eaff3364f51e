"""Transformer building blocks: multi-head attention (fused qkv, SDPA), MLP, pre-norm block."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float, scale: float) -> Tensor:
    """SDPA over (B, h, N, d/h). Training on a CPU under bf16 autocast runs it in float32: PyTorch's CPU
    flash-attention backward is 2-3x slower in bf16 than in float32 at every length measured (32 to 1568 tokens,
    benchmarks/bench_pretrain_step.py), and float32 is the more exact of the two."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16 and torch.is_grad_enabled() and q.requires_grad:
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), dropout_p=dropout_p, scale=scale)
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; q and v biases only (no k bias), as VideoMAE."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> Tensor | None:
        if self.q_bias is None:
            return None
        return torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        b, n, d = x.shape
        qkv = F.linear(x, self.qkv.weight, self.qkv_bias())  # (B, N, 3D)
        q, k, v = qkv.view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, d/h)
        x = attention(q, k, v, self.attn_drop if self.training else 0.0, self.scale)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, d)))


class LinearLayer(nn.Module):
    """Linear followed by an optional activation (module names match the official checkpoints)."""

    def __init__(self, d_in: int, d_out: int, activation: nn.Module | None = None, dropout: float = 0.0):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.activation = activation if activation is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.activation(self.linear(x)))


class MLP(nn.Module):
    """Stack of LinearLayers over `dims`; `activation` after every layer but the last."""

    def __init__(self, dims: list[int], activation: type[nn.Module] = nn.GELU, dropout: float = 0.0):
        super().__init__()
        last = len(dims) - 2
        self.layers = nn.ModuleList(
            LinearLayer(a, b, activation() if i < last else None, dropout) for i, (a, b) in enumerate(zip(dims, dims[1:])))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)); optional layer-scale."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, init_values: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP([dim, int(dim * mlp_ratio), dim], nn.GELU, drop)
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D) -> (B, N, D)
        if self.gamma_1 is None:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        x = x + self.gamma_1 * self.attn(self.norm1(x))
        return x + self.gamma_2 * self.mlp(self.norm2(x))


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linears with zero bias, unit LayerNorms (the official/VideoMAE initialisation)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def make_blocks(dim: int, depth: int, num_heads: int, cfg) -> nn.ModuleList:
    return nn.ModuleList(
        Block(dim, num_heads, cfg.mlp_ratio, cfg.qkv_bias, cfg.qk_scale, cfg.drop_rate, cfg.attn_drop_rate,
              cfg.init_values) for _ in range(depth))
