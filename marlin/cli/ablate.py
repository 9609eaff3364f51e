"""`marlin ablate STUDY...`: the paper's ablations (modules, masking, ratio, encoder) on synthetic worlds or items.

Its flags are generated from `marlin.apps.ablate.AblateSettings` (the config layer); any field also with ``--set``."""
from __future__ import annotations

from . import add_no_progress

FLAGS = {"out_dir": "--out", "minutes": "--budget"}


def add_arguments(p):
    from ..apps.ablate import STUDIES, AblateSettings
    from ..config import add_arguments as config_flags

    p.add_argument("study", nargs="+", choices=STUDIES, help="the studies to run (arms they share run once)")
    config_flags(p, AblateSettings, skip={"studies", "overrides", "progress"}, flags=FLAGS)
    add_no_progress(p, "--quiet", help="no progress bars, and libraries' INFO lines off stderr")


def run(args) -> int:
    from ..apps.ablate import AblateSettings, run_ablation
    from ..config import load, values_from_args

    values = values_from_args(args)
    values.pop("study", None)
    values["studies"] = list(dict.fromkeys(args.study))
    if args.no_progress:
        from . import quiet_libraries

        values["progress"] = False
        quiet_libraries()
    run_ablation(load(AblateSettings, None, args.set, values, where="marlin ablate"))
    return 0
