"""Encoder throughput per precision on this machine versus its matmul rate at that precision, and the accuracy
of each precision against float32. One run prints three tables (docs/performance.md records them):

1. the machine's matmul rate (2048^3) in fp32, bf16 and int8 (a torch.ao dynamically quantised Linear), measured
   beside every row and reported as the best of the run (the closest to an idle machine);
2. clips/s of each model at each batch size in fp32, bf16 (`extract_features(precision="bf16")`: autocast, pooling
   and final norm in float32) and int8 (torch.ao dynamic quantisation of every Linear, activations quantised per
   call), with the achieved GFLOP/s and its fraction of that precision's matmul rate, and the pooled cosine to
   fp32 on the same (random) clips; the precisions of a row take turns, best of --reps;
3. accuracy against fp32 on real inputs: the official tiny fixture (its weights and clip) and the sample videos
   cropped01/cropped05 through a ViT-B of random weights: per-token and pooled max |diff| and min cosine, for
   bf16 as shipped, bf16 with the pooling and final norm also in bf16 (why they stay float32), and int8.

FLOPs count true matmul work: patch embedding (N*D*1536 MACs) plus, per layer, 12*N*D^2 + 2*N^2*D MACs (qkv,
proj, MLP; QK^T and AV); 1 MAC = 2 FLOPs. Weights are random (no downloads); speed does not depend on them.

    python benchmarks/bench_model.py [--models S B L] [--batches 1 8] [--large-batches 1] [--reps 2] [--naive]
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from marlin import Marlin
from marlin.extract import clips_to_tensor, video_clips
from marlin.models.layers import Attention

SHARED = Path(__file__).resolve().parents[2] / "shared"
NAMES = {"S": "marlin_vit_small_ytf", "B": "marlin_vit_base_ytf", "L": "marlin_vit_large_ytf"}
PRECISIONS = ("fp32", "bf16", "int8")


# ---- the machine's matmul rate -------------------------------------------------------------------------------
def _rate(fn, flops: float, reps: int) -> float:
    """GFLOP/s of the best of ``reps`` calls of ``fn`` after a warm-up."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best / 1e9


class MatmulRate:
    """GFLOP/s (GOP/s for int8) of an n^3 matmul per precision, measured again beside every timed row (the host
    may be shared: its load changes while the benchmark runs); `peak` keeps the best seen per precision."""

    def __init__(self, n: int = 2048, bf16: bool = True):
        self.a, self.b = torch.randn(n, n), torch.randn(n, n)
        self.ab, self.bb = (self.a.bfloat16(), self.b.bfloat16()) if bf16 else (None, None)
        self.lin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(n, n, bias=False)),
                                                          {torch.nn.Linear}, dtype=torch.qint8)
        self.flops = 2.0 * n ** 3
        self.peak = {}

    def measure(self, reps: int = 5) -> dict:
        fns = {"fp32": lambda: self.a @ self.b, "int8": lambda: self.lin(self.a)}
        if self.ab is not None:  # off where bf16 is emulated: a 2048^3 emulated matmul takes minutes
            fns["bf16"] = lambda: self.ab @ self.bb
        with torch.inference_mode():
            now = {k: _rate(fn, self.flops, reps) for k, fn in fns.items()}
        self.peak = {k: max(v, self.peak.get(k, 0.0)) for k, v in now.items()}
        return now


def encoder_flops(cfg) -> float:
    n, d = cfg.num_tokens, cfg.encoder_embed_dim
    macs = n * d * cfg.patch_dim + cfg.encoder_depth * (12 * n * d * d + 2 * n * n * d)
    return 2.0 * macs


# ---- int8: torch.ao dynamic quantisation of every Linear -------------------------------------------------------
def _module_qkv_forward(self: Attention, x):
    """Attention through the qkv *module* (a quantised Linear has no float weight for F.linear)."""
    b, n, d = x.shape
    q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
    x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    return self.proj(x.transpose(1, 2).reshape(b, n, d))


def quantize_int8(model: Marlin) -> Marlin:
    """A copy with every encoder Linear dynamically quantised to int8 (qkv biases folded into the qkv Linear)."""
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, Attention):
            qkv = torch.nn.Linear(m.qkv.in_features, m.qkv.out_features, bias=m.q_bias is not None)
            qkv.weight.data.copy_(m.qkv.weight.data)
            if m.q_bias is not None:
                qkv.bias.data.copy_(m.qkv_bias().data)
            m.qkv, m.q_bias, m.v_bias = qkv, None, None
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


@contextlib.contextmanager
def module_attention():
    original = Attention.forward
    Attention.forward = _module_qkv_forward
    try:
        yield
    finally:
        Attention.forward = original


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


# ---- running one precision -----------------------------------------------------------------------------------
def features(model: Marlin, int8: Marlin | None, precision: str, x: torch.Tensor, keep_seq: bool = False):
    """Features of ``x`` in ``precision``: fp32 / bf16 through `extract_features`, int8 through ``int8``;
    "bf16-all": bf16 with the pooling and final norm in bf16 too (the plain autocast result)."""
    if precision == "int8":
        with module_attention(), torch.inference_mode():
            return int8.encoder.extract_features(x, keep_seq=keep_seq)
    if precision == "bf16-all":
        enc = model.encoder
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            emb = enc.embed(x)
            for block in enc.blocks:
                emb = block(emb)
            emb = emb if keep_seq else emb.mean(1)
            return F.layer_norm(emb, emb.shape[-1:], enc.norm.weight.bfloat16(), enc.norm.bias.bfloat16()).float()
    return model.extract_features(x, keep_seq=keep_seq, precision={"fp32": "32", "bf16": "bf16"}[precision])


def time_features(model, int8, precisions, x, reps: int) -> dict:
    """{precision: (best seconds of ``reps`` calls, output)}; the precisions take turns in every rep, so a change
    of the host's load hits them alike, and the best counts, since other processes only ever add time."""
    for precision in precisions:
        features(model, int8, precision, x[:1])  # warm-up on one clip (weight casts, threads, allocator)
    best = {p: (float("inf"), None) for p in precisions}
    for _ in range(reps):
        for precision in precisions:
            t = time.perf_counter()
            out = features(model, int8, precision, x)
            best[precision] = min(best[precision], (time.perf_counter() - t, out), key=lambda r: r[0])
    return best


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return F.cosine_similarity(a.flatten(0, -2), b.flatten(0, -2), dim=-1).min().item()


def throughput(args, rate: MatmulRate) -> list[tuple]:
    """(model, batch, precision, clips/s, GFLOP/s, pooled cosine to fp32) rows."""
    rows = []
    for key in args.models:
        name = NAMES.get(key, key)
        torch.manual_seed(0)
        model = Marlin.from_config(name, full_model=False).eval()
        int8 = quantize_int8(model) if "int8" in args.precisions else None
        flops = encoder_flops(model.config)
        cfg = model.config
        batches = args.large_batches if name == NAMES["L"] else args.batches
        for batch in batches:
            x = torch.rand(batch, 3, cfg.n_frames, cfg.img_size, cfg.img_size, generator=torch.Generator().manual_seed(0))
            now = rate.measure()
            timed = time_features(model, int8, args.precisions, x, args.reps)
            ref = timed["fp32"][1]
            for precision, (sec, out) in timed.items():
                rows.append((key, batch, precision, batch / sec, flops * batch / sec / 1e9, cosine(out, ref)))
            if args.naive:
                with naive_attention():
                    sec, out = time_features(model, int8, ["fp32"], x, args.reps)["fp32"]
                rows.append((key, batch, "fp32 naive attn", batch / sec, flops * batch / sec / 1e9, cosine(out, ref)))
            print(f"  measured {name} b={batch}: " + ", ".join(f"{p} {t:.2f} s" for p, (t, _) in timed.items())
                  + "; matmul now " + ", ".join(f"{p} {v:.0f}" for p, v in now.items()), flush=True)
    return rows


def accuracy_inputs():
    """(label, model, clips): the official tiny fixture, and the sample videos through a random ViT-B."""
    tiny = SHARED / "fixtures" / "official" / "tiny224"
    out = []
    if tiny.is_dir():
        model = Marlin.from_file(tiny / "tiny.yaml", tiny / "tiny.encoder.pt", full_model=False).eval()
        out.append(("official tiny224 fixture, clip.npy", model,
                    torch.from_numpy(np.load(tiny / "clip.npy")).float() / 255))
    torch.manual_seed(0)
    vit_b = Marlin.from_config(NAMES["B"], full_model=False).eval()
    for video in ("cropped01.mp4", "cropped05.mp4"):
        path = SHARED / "samples" / video
        if path.is_file():
            out.append((f"ViT-B (random), {video}", vit_b, clips_to_tensor(list(video_clips(path)))))
    return out


def accuracy(precisions) -> list[tuple]:
    rows = []
    for label, model, x in accuracy_inputs():
        int8 = quantize_int8(model) if "int8" in precisions else None
        ref_tok, ref_pool = features(model, None, "fp32", x, True), features(model, None, "fp32", x)
        for precision in [p for p in ("bf16", "bf16-all", "int8") if p in precisions or p == "bf16-all"]:
            tok, pool = features(model, int8, precision, x, True), features(model, int8, precision, x)
            rows.append((label, len(x), precision, (tok - ref_tok).abs().max().item(), cosine(tok, ref_tok),
                         (pool - ref_pool).abs().max().item(), cosine(pool, ref_pool)))
        print(f"  measured accuracy: {label}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["S", "B", "L"], help="S, B, L or preset names")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--large-batches", nargs="+", type=int, default=[1], help="batches of ViT-L (slow in fp32)")
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    p.add_argument("--reps", type=int, default=2, help="timed calls per row; the best counts")
    p.add_argument("--naive", action="store_true", help="also time fp32 with a naive attention reference")
    p.add_argument("--no-accuracy", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated")  # see docs/performance.md
    warnings.filterwarnings("ignore", message=".*quantized tensor creation")
    if "fp32" not in args.precisions:
        args.precisions.insert(0, "fp32")
    start = time.perf_counter()
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load} at the start; "
          f"native bf16: avx512_bf16 {torch.cpu._is_avx512_bf16_supported()}, amx {torch.cpu._is_amx_tile_supported()}")
    rate = MatmulRate()
    rows = throughput(args, rate)
    acc = [] if args.no_accuracy else accuracy(args.precisions)
    rate.measure()
    peak = rate.peak
    print("\n| matmul 2048^3, best of the run | fp32 | bf16 | int8 (dynamic Linear) |\n|---|---|---|---|")
    print(f"| GFLOP/s | {peak['fp32']:.0f} | {peak['bf16']:.0f} | {peak['int8']:.0f} |")
    print("\n| model | batch | precision | clips/s | GFLOP/s | % of its matmul rate | x fp32 | pooled cos vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    base = {(r[0], r[1]): r[3] for r in rows if r[2] == "fp32"}
    for r in rows:
        frac = 100 * r[4] / peak[r[2].split()[0]]
        print(f"| ViT-{r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.0f} | {frac:.0f}% | {r[3] / base[r[0], r[1]]:.2f} "
              f"| {r[5]:.6f} |")
    if acc:
        print("\n| input | clips | precision | token max abs diff | token min cos | pooled max abs diff | pooled min cos |")
        print("|---|---|---|---|---|---|---|")
        for r in acc:
            print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2e} | {r[4]:.6f} | {r[5]:.2e} | {r[6]:.7f} |")
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    print(f"\n{time.perf_counter() - start:.0f} s in all; load average {load} at the end")


if __name__ == "__main__":
    main()
