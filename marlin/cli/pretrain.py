"""`marlin pretrain`: Fasking MAE + adversarial pretraining on preprocessed face clips or YouTube Faces.

Every setting of `PretrainConfig` / `TrainerSettings` is a flag (generated from the config fields) and can be set
with ``--set key=value``; the resolved configuration is written to OUT/config.yaml."""
from __future__ import annotations

import argparse
import contextlib
import signal
import threading

from . import add_no_progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..config import add_arguments as config_flags
    from ..masking import STRATEGIES
    from ..train import PretrainConfig
    from ..train.config import STRATEGIES_DIST

    p.add_argument("--config", required=True,
                   help="pretraining YAML (official layout, optional trainer: section) or a shipped name: "
                        "tiny_cpu, demo_cpu, marlin_vit_small, marlin_vit_base, marlin_vit_large")
    p.add_argument("--data", required=True,
                   help="output of `marlin preprocess`/`marlin synth` (or a .txt item list), a YouTube Faces root, "
                        "or shards of `marlin shard` (their folder or a brace pattern 'dir/shard-{000000..000063}.tar')")
    p.add_argument("--val-data", help="validation data (default: the YTF val split, else fixed training clips)")
    p.add_argument("--out", default="runs/pretrain", help="run directory (default: runs/pretrain)")
    p.add_argument("--devices", type=int, default=1, help="devices per node (GPUs, or CPU processes)")
    p.add_argument("--nodes", type=int, default=1,
                   help="number of nodes: start the command on each (torchrun --nnodes N, or srun under SLURM); "
                        "Lightning reads the ranks from their environment")
    p.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda", "mps"])
    p.add_argument("--resume", help="continue a run from its checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in an OUT that holds a run's checkpoints/last.ckpt (replaced at the first save)")
    p.add_argument("--init", help="initialise weights from a VideoMAE or MARLIN checkpoint")
    add_no_progress(p)
    # the model architecture comes from --config (change it with --set model.encoder_depth=...)
    config_flags(p, PretrainConfig, skip={"model"}, short=True,
                 choices={"mask_strategy": STRATEGIES, "trainer.strategy": STRATEGIES_DIST})


def check_resume(resume: str | None, out: str, overwrite: bool) -> None:
    """Refuse, before anything starts, a --resume file that is not a `marlin pretrain` checkpoint (read with
    weights_only=True), and a fresh run into an OUT whose last.ckpt it would overwrite."""
    from pathlib import Path

    from ..checkpoints import CheckpointError, load_file
    from ..errors import MarlinError

    if resume is None:
        last = Path(out) / "checkpoints" / "last.ckpt"
        if last.exists() and not overwrite:
            raise MarlinError(f"{last}: this run directory holds a checkpoint: continue it with --resume {last}, "
                              f"or start over with --overwrite")
        return
    ckpt = load_file(resume)  # a missing, empty, random or code-carrying file: CheckpointError naming it
    if not isinstance(ckpt, dict) or "marlin_pretrain" not in ckpt:
        raise CheckpointError(f"{resume}: not a `marlin pretrain` checkpoint (checkpoints/last.ckpt of a run); "
                              f"use --init to start from other weights")


@contextlib.contextmanager
def ctrl_c_exits_130():
    """Lightning turns Ctrl-C into sys.exit(1); a Ctrl-C seen here turns that exit back into KeyboardInterrupt,
    which the command reports as interrupted (exit 130). Signals are only handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = []

    def on_sigint(signum, frame):
        interrupted.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    except SystemExit:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args) -> int:
    import logging

    from ..atomic import check_writable
    from ..config import values_from_args
    from ..train import pretrain, pretrain_config

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = pretrain_config(args.config, overrides=args.set, values=values_from_args(args))
    check_writable(args.out, folder=True)
    check_resume(args.resume, args.out, args.overwrite)
    with ctrl_c_exits_130():
        result = pretrain(cfg, args.data, args.out, devices=args.devices, nodes=args.nodes,
                          accelerator=args.accelerator, resume=args.resume, init=args.init,
                          val_dir=args.val_data, progress=not args.no_progress)
    if result.exports:
        print(f"{result.iterations} iterations in {result.seconds:.0f} s (stopped by {result.stopped_by})")
        print(f"checkpoint: {result.checkpoint}")
        for k, v in result.exports.items():
            print(f"export {k}: {v}")
        print(f"history: {result.history_csv}")
    return 0
