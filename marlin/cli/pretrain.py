"""`marlin pretrain`: Fasking MAE + adversarial pretraining on preprocessed face clips or YouTube Faces."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True,
                   help="pretraining YAML (official layout, optional trainer: section) or a shipped name: "
                        "tiny_cpu, marlin_vit_small, marlin_vit_base, marlin_vit_large")
    p.add_argument("--data", required=True,
                   help="output of `marlin preprocess`/`marlin synth` (or a .txt item list), or a YouTube Faces root")
    p.add_argument("--val-data", help="validation data (default: the YTF val split, else fixed training clips)")
    p.add_argument("--out", default="runs/pretrain", help="run directory (default: runs/pretrain)")
    p.add_argument("--devices", type=int, default=1, help="devices per node (GPUs, or CPU processes)")
    p.add_argument("--nodes", type=int, default=1, help="number of nodes (torchrun or SLURM)")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda", "mps"])
    p.add_argument("--precision", help="32-true, bf16-mixed, or auto (bf16-mixed where the hardware computes bf16 "
                   "natively: GPUs, AVX512-BF16 / AMX CPUs); default: bf16-mixed on GPUs, 32-true on CPUs")
    p.add_argument("--max-steps", type=int, help="stop after this many iterations (also sets the schedule length)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes of training")
    p.add_argument("--batch-size", type=int, help="clips per device per micro-batch")
    p.add_argument("--accumulate", type=int, help="micro-batches per optimiser step")
    p.add_argument("--grad-clip", type=float, help="max gradient norm (0 = off)")
    p.add_argument("--norm-target", action="store_true", default=None, help="per-patch normalised pixel targets")
    p.add_argument("--num-workers", type=int, help="data-loader workers per device")
    p.add_argument("--cache-mb", type=float,
                   help="keep decoded videos in memory up to this many MiB per worker (small datasets, many epochs)")
    p.add_argument("--seed", type=int)
    p.add_argument("--val-every", type=int, help="iterations between validations / reconstruction PNGs")
    p.add_argument("--ckpt-every", type=int, help="iterations between resumable checkpoints")
    p.add_argument("--log-every", type=int, help="iterations per history.csv row")
    p.add_argument("--mask-strategy", choices=["fasking", "fasking_opp", "random", "tube", "frame"],
                   help="override the config's mask_strategy")
    p.add_argument("--mask-ratio", type=float, help="override the config's mask_percentage_target (0.9)")
    p.add_argument("--resume", help="continue a run from its checkpoints/last.ckpt")
    p.add_argument("--init", help="initialise weights from a VideoMAE or MARLIN checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import logging
    import sys

    from ..checkpoints import CheckpointError
    from ..train import pretrain, pretrain_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = pretrain_config(args.config)
        if args.mask_strategy:
            cfg.mask_strategy = args.mask_strategy
        if args.mask_ratio is not None:
            cfg.mask_ratio = args.mask_ratio
        result = pretrain(cfg, args.data, args.out, max_steps=args.max_steps, max_minutes=args.max_minutes,
                          devices=args.devices, nodes=args.nodes, accelerator=args.accelerator,
                          precision=args.precision, resume=args.resume, init=args.init, val_dir=args.val_data,
                          progress=not args.no_progress, batch_size=args.batch_size, accumulate=args.accumulate,
                          grad_clip=args.grad_clip, norm_target=args.norm_target, num_workers=args.num_workers,
                          cache_mb=args.cache_mb, seed=args.seed, val_every=args.val_every, ckpt_every=args.ckpt_every,
                          log_every=args.log_every)
    except (FileNotFoundError, ValueError, CheckpointError) as e:
        print(f"marlin pretrain: {e}", file=sys.stderr)
        return 2
    if result.exports:
        print(f"{result.iterations} iterations in {result.seconds:.0f} s (stopped by {result.stopped_by})")
        print(f"checkpoint: {result.checkpoint}")
        for k, v in result.exports.items():
            print(f"export {k}: {v}")
        print(f"history: {result.history_csv}")
    return 0
