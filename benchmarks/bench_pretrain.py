"""Seconds per pretraining iteration: our one-forward step vs the official loop (reproduced), same run.

    python benchmarks/bench_pretrain.py [--preset marlin_vit_small] [--batch 2] [--iters 5] [--device cpu|cuda]
    python benchmarks/bench_pretrain.py --loader DATA_DIR [--preset ...] [--iters 50] [--cache-mb 1024]  # data path

Each variant runs in its own subprocess (so the peak memory of one does not hide the other's): the same model
(seeded), the same clips and masks (ratio 0.9), adversarial loss on (d_steps = g_steps = 1), AdamW for generator
and critic. Peak memory: CUDA max allocated on GPUs, process peak RSS on CPUs.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def run_variant(args) -> dict:
    import resource

    import torch

    from marlin.masking import MaskSpec, make_masks
    from marlin.models import Critic, Marlin
    from marlin.train import pretrain_config
    from marlin.train.official_loop import official_iteration
    from marlin.train.step import train_iteration

    cfg = pretrain_config(args.preset)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model, critic = Marlin(cfg.model).to(dev), Critic(cfg.model).to(dev)
    g_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    d_opt = torch.optim.AdamW(critic.parameters(), lr=1e-4, betas=(0.9, 0.95))
    c = cfg.model
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, c.n_frames, c.img_size, c.img_size, generator=g).to(dev)
    mask = make_masks(MaskSpec("random", cfg.mask.ratio), args.batch, c.grid, generator=g).to(dev)
    step = train_iteration if args.variant == "ours" else official_iteration
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16)

    def once():
        with amp:
            out = step(model, critic, g_opt, d_opt, x, mask, cfg)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    for _ in range(args.warmup):
        once()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        out = once()
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"variant": args.variant, "median_s": sorted(times)[len(times) // 2], "min_s": min(times),
            "peak_mib": peak / 2 ** 20, "rec_loss": float(out["rec_loss"])}


def loader_speed(args) -> None:
    """Clips per second of the pretraining data pipeline in ONE process (= per data-loader worker / core)."""
    from marlin.data.clips import PretrainClips, open_items
    from marlin.masking import MaskSpec
    from marlin.train import pretrain_config

    cfg = pretrain_config(args.preset)
    c = cfg.model
    items = open_items(args.loader)
    print(f"# data pipeline, one process: {len(items)} items from {args.loader}, {c.n_frames} frames at stride "
          f"{cfg.sample_rate}, {c.img_size}px")
    print("| mask strategy | decoded-video cache | clips/s | ms/clip | ms/clip on an item's first visit |")
    print("|---|---|---|---|---|")
    for strategy, cache_mb in [(s, m) for s in ("random", "fasking") for m in (0, args.cache_mb)]:
        ds = PretrainClips(items, c, MaskSpec(strategy, cfg.mask.ratio), cfg.sample_rate, 0, cache_mb=cache_mb)
        t = time.perf_counter()
        for p in range(len(items)):  # first visits: Fasking reads each item's parse maps once
            ds[p]
        first = (time.perf_counter() - t) / len(items)
        t = time.perf_counter()
        for p in range(len(items), len(items) + args.iters):
            ds[p]
        dt = (time.perf_counter() - t) / args.iters
        cache = f"{cache_mb:g} MiB ({len(ds._videos)} of {len(items)} videos held)" if cache_mb else "off"
        print(f"| {strategy} | {cache} | {1 / dt:.1f} | {1000 * dt:.1f} | {1000 * first:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="marlin_vit_small", help="shipped pretraining config name or YAML")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (GPUs)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--rounds", type=int, default=1, help="alternate official/ours this many times, keep the best")
    p.add_argument("--loader", metavar="DATA_DIR", help="instead: time the clip loader on this data (one process)")
    p.add_argument("--cache-mb", type=float, default=1024, help="with --loader: the cached variant's budget")
    p.add_argument("--variant", choices=["ours", "official"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.loader:
        loader_speed(args)
        return
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    best: dict[str, dict] = {}
    for _ in range(args.rounds):  # alternate the variants; keep each one's fastest round (shared machines)
        for variant in ("official", "ours"):
            cmd = [sys.executable, __file__, "--variant", variant] + sys.argv[1:]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                sys.exit(f"{variant} failed:\n{res.stderr[-3000:]}")
            r = json.loads(res.stdout.strip().splitlines()[-1])
            if variant not in best or r["median_s"] < best[variant]["median_s"]:
                best[variant] = r
    rows = [best["official"], best["ours"]]
    import torch

    dev = args.device if args.device == "cpu" else torch.cuda.get_device_name(0)
    print(f"# {args.preset}, batch {args.batch}, mask ratio 0.9, adversarial on, device {dev}"
          f"{', bf16 autocast' if args.bf16 else ''}, {args.iters} timed iterations after {args.warmup} warm-up, "
          f"best of {args.rounds} round(s)")
    print(f"| loop | s/iter (median) | s/iter (min) | peak memory MiB | last rec_loss |")
    print(f"|---|---|---|---|---|")
    for r in rows:
        name = "official (G forward per critic and generator step)" if r["variant"] == "official" else \
            "ours (one G forward per iteration)"
        print(f"| {name} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['peak_mib']:.0f} | {r['rec_loss']:.5f} |")
    print(f"\nspeed-up (median): {rows[0]['median_s'] / rows[1]['median_s']:.2f}x")


if __name__ == "__main__":
    main()
