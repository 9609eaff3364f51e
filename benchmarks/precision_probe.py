"""What bf16 extraction does to a downstream probe: the demo's tasks, probed on features of one (pretrained)
encoder extracted in float32 and in bf16, with the demo's check probe (logistic, penalty chosen on val).

Needs a finished `marlin demo` output (its encoder export and its two synthetic worlds). Prints, per task, the
test metric in fp32 and bf16 and their difference, with the feature cosine between the two and the extraction
time of each precision.

    python benchmarks/precision_probe.py --demo marlin_demo [--test-items 1000] [--readout spatial|pooled]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from marlin import Marlin
from marlin.apps.worlds import task_datasets
from marlin.downstream.probes import encode_videos
from marlin.downstream.metrics import paired_bootstrap


def probe(task, x: dict, y: dict) -> tuple[float, np.ndarray]:
    """The demo check's (test metric, test scores): logistic probe on z-scored features, penalty chosen on val."""
    from marlin.downstream.linear import predict, train_logistic
    from marlin.downstream.metrics import compute_metrics

    mu, sd = x["train"].mean(0), x["train"].std(0) + 1e-6
    z = {s: (v - mu) / sd for s, v in x.items()}
    head, *_ = train_logistic(task, z["train"], y["train"], z["val"], y["val"])
    scores = task.scores(predict(head, z["test"])).numpy()
    return compute_metrics(task.kind, scores, y["test"])[task.metric], scores


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", type=Path, required=True, help="a `marlin demo` output folder")
    p.add_argument("--test-items", type=int, default=1000)
    p.add_argument("--readout", default="spatial", choices=["spatial", "pooled"])
    args = p.parse_args()
    model = Marlin.from_file(None, args.demo / "pretrain" / "export" / "marlin_demo_cpu.safetensors",
                             full_model=False).eval()
    datasets = task_datasets(args.demo / "data", args.demo / "data_test", args.test_items)
    splits = next(iter(datasets.values())).splits
    videos = sorted({str(s.source) for samples in splits.values() for s in samples})
    sample_rate = 1  # demo_cpu's pretraining sample rate, as the demo reads its videos
    feats, seconds = {}, {}
    for precision in ("fp32", "bf16"):
        t = time.perf_counter()
        out = encode_videos({"m": model}, videos, sample_rate, args.readout, progress=False,
                            precision={"fp32": "32", "bf16": "bf16"}[precision])
        seconds[precision] = time.perf_counter() - t
        feats[precision] = dict(zip(videos, out["m"]))
        print(f"  {precision}: {len(videos)} videos in {seconds[precision]:.0f} s", flush=True)
    a = torch.from_numpy(np.stack([feats["fp32"][v] for v in videos]))
    b = torch.from_numpy(np.stack([feats["bf16"][v] for v in videos]))
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    print(f"\n{len(videos)} videos, {args.readout} readout ({a.shape[1]} numbers); feature cosine bf16 vs fp32: "
          f"min {cos.min():.6f}, mean {cos.mean():.6f}; max |diff| {(a - b).abs().max():.3g}; extraction "
          f"{seconds['fp32']:.0f} s fp32, {seconds['bf16']:.0f} s bf16\n")
    print("| task | metric | fp32 | bf16 | bf16 - fp32 | 95 % paired bootstrap |\n|---|---|---|---|---|---|")
    for name, ds in datasets.items():
        y = {s: ds.targets(s) for s in ("train", "val", "test")}
        m = {prec: probe(ds.task, {s: np.stack([feats[prec][str(smp.source)] for smp in ds.splits[s]])
                                   for s in y}, y) for prec in ("fp32", "bf16")}
        lo, hi = paired_bootstrap(ds.task.kind, ds.task.metric, m["fp32"][1], m["bf16"][1], y["test"])
        print(f"| {name} | {ds.task.metric} | {m['fp32'][0]:.4f} | {m['bf16'][0]:.4f} | "
              f"{m['bf16'][0] - m['fp32'][0]:+.4f} | [{lo:+.4f}, {hi:+.4f}] |", flush=True)


if __name__ == "__main__":
    main()
