"""`marlin finetune CONFIG`: fine-tune the MARLIN encoder with a linear head on a dataset task."""
from __future__ import annotations


def add_arguments(parser) -> None:
    from marlin.downstream.cliargs import add_run_arguments

    add_run_arguments(parser)
    parser.add_argument("--device", help="auto | cpu | cuda[:k] (overrides the config)")


def run(args) -> int:
    from marlin.downstream.cliargs import print_summary, run_config_from_args
    from marlin.downstream.finetune import run_finetune

    cfg = run_config_from_args(args, device=args.device)
    data = run_finetune(cfg, progress=not args.no_progress)
    return print_summary(data, cfg.out)
