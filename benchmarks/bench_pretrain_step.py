"""Milliseconds per CPU pretraining iteration under bf16 autocast: the attention core in bf16 or float32, AdamW
for-each or fused, measured in alternating rounds of the same run (the reference is the first row).

    python benchmarks/bench_pretrain_step.py [--config demo_cpu] [--batch 8] [--iters 40] [--rounds 5]

Also prints SDPA forward+backward times on a CPU for a few (batch, heads, tokens, head dim) shapes in bf16 and
float32: the measurement behind `marlin.models.layers.attention` (training on a CPU under bf16 autocast runs the
attention core in float32).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def attention_table(rounds: int = 10) -> list[str]:
    import torch
    import torch.nn.functional as F

    rows = ["| B, heads, tokens, head dim | bf16 fwd+bwd (ms) | float32 fwd+bwd (ms) |", "|---|---|---|"]
    for b, h, n, d in [(8, 3, 32, 64), (8, 3, 128, 32), (8, 12, 156, 64), (8, 3, 1568, 32)]:
        times = []
        for dtype in (torch.bfloat16, torch.float32):
            q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
            F.scaled_dot_product_attention(q, k, v).sum().backward()
            t = time.perf_counter()
            for _ in range(rounds):
                F.scaled_dot_product_attention(q, k, v).sum().backward()
            times.append((time.perf_counter() - t) / rounds * 1000)
        rows.append(f"| {b}, {h}, {n}, {d} | {times[0]:.2f} | {times[1]:.2f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="demo_cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    import marlin.models.layers as layers
    from marlin.masking import make_masks
    from marlin.models import Critic, Marlin
    from marlin.train import pretrain_config
    from marlin.train.step import train_iteration

    torch.manual_seed(0)
    cfg = pretrain_config(args.config)
    c = cfg.model
    model, critic = Marlin(c, full_model=True), Critic(c)
    x = torch.rand(args.batch, 3, c.n_frames, c.img_size, c.img_size)
    mask = make_masks(cfg.mask, args.batch, c.grid, generator=torch.Generator().manual_seed(0))

    def bf16_core(q, k, v, dropout_p, scale):  # the reference: SDPA in the autocast dtype
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)

    opts = {f: torch.optim.AdamW(model.parameters(), lr=1e-4, betas=cfg.betas, fused=f) for f in (False, True)}
    d_opt = torch.optim.AdamW(critic.parameters(), lr=1e-4)
    variants = {"attention bf16, AdamW for-each (reference)": (bf16_core, False),
                "attention float32, AdamW for-each": (layers.attention, False),
                "attention bf16, AdamW fused": (bf16_core, True),
                "attention float32, AdamW fused (ours)": (layers.attention, True)}
    ours = layers.attention
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (core, fused) in variants.items():
            layers.attention = core

            def step():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    train_iteration(model, critic, opts[fused], d_opt, x, mask, cfg)

            for _ in range(3):
                step()
            t = time.perf_counter()
            for _ in range(args.iters):
                step()
            times[name].append((time.perf_counter() - t) / args.iters * 1000)
    layers.attention = ours
    ref = statistics.median(times[next(iter(variants))])
    print(f"{args.config}, batch {args.batch}, {torch.get_num_threads()} threads, median of {args.rounds} rounds "
          f"of {args.iters} iterations\n")
    print("| variant | ms / iteration | vs reference |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.1f} | {statistics.median(ts) / ref:.2f}x |")
    print()
    print("\n".join(attention_table()))


if __name__ == "__main__":
    main()
