"""`marlin demo`: synthetic world -> pretraining -> features -> linear probes vs a random encoder -> report.

Its flags are generated from `marlin.apps.demo.DemoSettings` (the config layer); any field also with ``--set``."""
from __future__ import annotations

from . import add_no_progress

# historic flag names of some settings
FLAGS = {"out_dir": "--out", "num_items": "--num", "test_items": "--test-num"}


def add_arguments(p):
    from ..config import add_arguments as config_flags
    from ..apps.demo import PRECISIONS, READOUTS, DemoSettings

    config_flags(p, DemoSettings, skip={"overrides", "progress"}, flags=FLAGS,
                 choices={"readout": READOUTS, "precision": PRECISIONS})
    add_no_progress(p, "--quiet", help="no progress bars, and libraries' INFO lines off stderr")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 unless the pretrained encoder beats the random one on every task by a "
                        "clear margin (95 %% bootstrap interval above 0)")


def run(args) -> int:
    from ..config import load, values_from_args
    from ..apps.demo import DemoSettings, run_demo

    values = values_from_args(args)
    if args.no_progress:
        from . import quiet_libraries

        values["progress"] = False
        quiet_libraries()
    report = run_demo(load(DemoSettings, None, args.set, values, where="marlin demo"))
    if args.strict and not report["pretrained_beats_random_on_every_task"]:
        return 1
    return 0
