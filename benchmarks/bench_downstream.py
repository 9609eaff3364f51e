"""Fine-tuning throughput of MARLIN encoders + linear head (train step: forward + backward + Adam) against
the frozen-feature extraction of linear probing (no-grad forward), measured in the same run.

    python benchmarks/bench_downstream.py [--device cuda] [--presets marlin_vit_small_ytf marlin_vit_base_ytf]
"""
from __future__ import annotations

import argparse
import time

import torch

from marlin.downstream.model import VideoClassifier
from marlin.models import Marlin, resolve_config


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(preset: str, device: torch.device, batch: int, steps: int, amp: bool) -> dict:
    cfg = resolve_config(preset)
    torch.manual_seed(0)
    model = VideoClassifier(Marlin(cfg, full_model=False).encoder, 40).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.9))
    x = torch.rand(batch, 3, cfg.n_frames, cfg.img_size, cfg.img_size, device=device)
    y = torch.randint(0, 2, (batch, 40), device=device).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dtype = torch.bfloat16 if amp else torch.float32

    def train_step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = loss_fn(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def extract_step():
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            model.encoder.extract_features(x, keep_seq=False)

    out = {}
    for name, fn in (("extract (LP)", extract_step), ("train step (FT)", train_step)):
        fn()
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        out[name] = batch * steps / (time.perf_counter() - t)
    if device.type == "cuda":
        out["peak GiB"] = torch.cuda.max_memory_allocated() / 2 ** 30
        torch.cuda.reset_peak_memory_stats()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--presets", nargs="+", default=["marlin_vit_small_ytf", "marlin_vit_base_ytf"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    args = p.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; batch {args.batch} clips of 16 x 224 x 224; {args.steps} steps; amp {args.amp}")
    print("| encoder | extract (LP), clips/s | train step (FT), clips/s | FT / extract | peak GiB |")
    print("|---|---|---|---|---|")
    for preset in args.presets:
        r = measure(preset, device, args.batch, args.steps, args.amp)
        print(f"| {preset} | {r['extract (LP)']:.1f} | {r['train step (FT)']:.1f} | "
              f"{r['train step (FT)'] / r['extract (LP)']:.2f} | {r.get('peak GiB', float('nan')):.1f} |")


if __name__ == "__main__":
    main()
