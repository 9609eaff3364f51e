"""Command-line options shared by `marlin probe` and `marlin finetune`."""
from __future__ import annotations

import argparse
import sys

from ..cli import add_no_progress
from .config import load_run_config, shipped_configs


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run YAML, or the name of a shipped config: " + ", ".join(shipped_configs()))
    parser.add_argument("--root", help="dataset root (overrides the config)")
    parser.add_argument("--weights", help="encoder checkpoint, or 'random' (overrides encoder.weights)")
    parser.add_argument("--model", help="encoder preset / YAML (overrides encoder.model)")
    parser.add_argument("--out", help="output directory (overrides the config)")
    parser.add_argument("--few-shot", nargs="+", metavar="F",
                        help="fractions of the training labels, e.g. 100%% 10%% 1%%")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (one run each)")
    parser.add_argument("--folds", nargs="+", type=int, help="folds to run (DFEW / MAFW: 1..5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set train.lr=1e-3 (repeatable)")
    add_no_progress(parser)


def run_config_from_args(args, **values):
    """The `RunConfig` of a command line: the config file, then --set, then the named options (and ``values``)."""
    # paths and names stay strings (not parsed as YAML); "null" clears the encoder model (our .safetensors)
    given = {key: None if value in ("null", "none", "None") else value
             for key, value in (("root", args.root), ("encoder.weights", args.weights),
                                ("encoder.model", args.model), ("out", args.out)) if value is not None}
    given.update({key: value for key, value in (("few_shot", args.few_shot), ("seeds", args.seeds),
                                                ("folds", args.folds)) if value})
    given.update({k: v for k, v in values.items() if v is not None})
    return load_run_config(args.config, list(args.set), given)


def print_summary(data: dict, out) -> int:
    """Print the results; returns the exit code: 1 when some inputs failed (each listed in a skipped_*.txt)."""
    from .report import COLUMNS

    kind = data["task"]["kind"]
    for s in data["summary"]:
        vals = ", ".join(f"{m} {s[m]:.4f}" for m in COLUMNS[kind])
        print(f"{data['task']['name']} ({s['few_shot']:.0%} of the training labels, {s['runs']} run(s)): {vals}")
    print(f"results: {out}/results.md, {out}/metrics.json")
    failed = max((r.get("failed_inputs", 0) for r in data["runs"]), default=0)
    if failed:
        print(f"{failed} input(s) failed and were left out (listed in {out}/skipped_*.txt)", file=sys.stderr)
    return 1 if failed else 0
