"""Encoder throughput on this machine versus its matmul rate, and versus a naive attention reference.

Prints one table. FLOPs count true matmul work: patch embedding (N*D*1536 MACs) plus, per layer,
12*N*D^2 + 2*N^2*D MACs (qkv, proj, MLP; QK^T and AV); 1 MAC = 2 FLOPs.

    python benchmarks/bench_model.py [--models marlin_vit_small_ytf marlin_vit_base_ytf] [--batches 1 8] [--reps 2]
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from marlin import Marlin
from marlin.models.layers import Attention


def matmul_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9


def encoder_flops(cfg) -> float:
    n, d = cfg.num_tokens, cfg.encoder_embed_dim
    macs = n * d * cfg.patch_dim + cfg.encoder_depth * (12 * n * d * d + 2 * n * n * d)
    return 2.0 * macs


def _naive_forward(self: Attention, x):
    b, n, d = x.shape
    h = self.num_heads
    qkv = torch.nn.functional.linear(x, self.qkv.weight, self.qkv_bias())
    q, k, v = qkv.view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
    attn = (q * self.scale) @ k.transpose(-2, -1)
    x = attn.softmax(dim=-1) @ v
    return self.proj(x.transpose(1, 2).reshape(b, n, d))


@contextlib.contextmanager
def naive_attention():
    """Swap every Attention to an explicit softmax(QK^T)V for the duration."""
    original = Attention.forward
    Attention.forward = _naive_forward
    try:
        yield
    finally:
        Attention.forward = original


def time_encoder(model, batch: int, reps: int) -> tuple[float, torch.Tensor]:
    cfg = model.config
    x = torch.rand(batch, 3, cfg.n_frames, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model.encoder.extract_features(x, keep_seq=False)  # warm-up
        t = time.perf_counter()
        for _ in range(reps):
            model.encoder.extract_features(x, keep_seq=False)
        return (time.perf_counter() - t) / reps, out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["marlin_vit_small_ytf", "marlin_vit_base_ytf"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--reps", type=int, default=2)
    args = p.parse_args()
    peak = matmul_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul (2048^2 fp32): {peak:.1f} GFLOP/s\n")
    rows = []
    for name in args.models:
        model = Marlin.from_config(name, full_model=False).eval()
        flops = encoder_flops(model.config)
        for batch in args.batches:
            for impl in ("sdpa (ours)", "naive reference"):
                ctx = naive_attention() if impl.startswith("naive") else contextlib.nullcontext()
                with ctx:
                    sec, out = time_encoder(model, batch, args.reps)
                if impl.startswith("sdpa"):
                    ref_out = out
                    diff = 0.0
                else:
                    diff = (out - ref_out).abs().max().item()
                achieved = flops * batch / sec / 1e9
                rows.append((name, batch, impl, batch / sec, achieved, 100 * achieved / peak, diff))
                print(f"  measured {name} b={batch} {impl}: {sec:.2f} s/batch", flush=True)
    print(f"\n| model | batch | attention | clips/s | GFLOP/s | % of matmul | max |diff| vs ours |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.1f} | {r[5]:.0f}% | {r[6]:.1e} |")


if __name__ == "__main__":
    main()
