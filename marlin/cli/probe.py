"""`marlin probe CONFIG`: linear probing on (cached) MARLIN features of a dataset task."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from marlin.downstream.cliargs import add_run_arguments

    add_run_arguments(parser)
    parser.add_argument("--features", help="feature cache folder (`marlin extract` output; overrides the config)")


def run(args) -> int:
    from marlin.downstream.cliargs import print_summary, run_config_from_args
    from marlin.downstream.probe import run_probe

    cfg = run_config_from_args(args, features=args.features)
    data = run_probe(cfg, progress=not args.no_progress)
    return print_summary(data, Path(cfg.out))
