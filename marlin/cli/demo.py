"""`marlin demo`: synthetic world -> pretraining -> features -> linear probes vs a random encoder -> report."""
from __future__ import annotations

from pathlib import Path


def add_arguments(p):
    from ..demo import DemoSettings

    d = DemoSettings()
    p.add_argument("--out", type=Path, default=d.out_dir, help="output directory (data, runs, report)")
    p.add_argument("--minutes", type=float, default=d.minutes, help="pretraining wall-clock budget")
    p.add_argument("--max-steps", type=int, default=d.max_steps,
                   help="pretraining iterations (also the cosine schedule's length); the minutes budget still caps")
    p.add_argument("--num", type=int, default=d.num_items, help="number of synthetic clips")
    p.add_argument("--test-num", type=int, default=d.test_items,
                   help="probe test clips from a second synthetic world (seed + 1; its items 0..N-1, so a larger "
                        "world is reused); 0: the first world's test split")
    p.add_argument("--frames", type=int, default=d.frames)
    p.add_argument("--size", type=int, default=d.size, help="crop size (must match the config's img_size)")
    p.add_argument("--config", default=d.config, help="pretraining config (shipped name or YAML)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="processes generating the synthetic world")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--readout", choices=["spatial", "pooled"], default=d.readout,
                   help="probe features: per spatial token position (mean and std over time), or the pooled clip "
                        "feature of the official extract_features")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=d.precision,
                   help="feature extraction in float32 or under bf16 autocast")
    p.add_argument("--ablation", action="store_true",
                   help="also pretrain with each of fasking / tube / random masking that is not the config's, "
                        "at the same budget")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 3 unless the pretrained encoder beats the random one on every task by a "
                        "clear margin (95 %% bootstrap interval above 0)")


def run(args) -> int:
    from ..demo import DemoSettings, run_demo

    report = run_demo(DemoSettings(out_dir=args.out, num_items=args.num, frames=args.frames, size=args.size,
                                   seed=args.seed, workers=args.workers, config=args.config, minutes=args.minutes,
                                   max_steps=args.max_steps, ablation=args.ablation, batch_size=args.batch_size,
                                   readout=args.readout, test_items=args.test_num, precision=args.precision,
                                   progress=not args.quiet))
    if args.strict and not report["pretrained_beats_random_on_every_task"]:
        return 3
    return 0
