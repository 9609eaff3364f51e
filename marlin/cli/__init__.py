"""The `marlin` command. Each subcommand lives in its own module ``marlin.cli.<name>`` that defines
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command runs."""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS = {
    "demo": ("marlin.cli.demo", "run the whole system end to end on a synthetic world (CPU, minutes)"),
    "extract": ("marlin.cli.extract", "extract MARLIN features from videos"),
    "preprocess": ("marlin.cli.preprocess", "detect, track, crop and parse faces in videos"),
    "synth": ("marlin.cli.synth", "generate a synthetic talking-face dataset"),
    "pretrain": ("marlin.cli.pretrain", "pretrain MARLIN (Fasking MAE + adversarial)"),
    "probe": ("marlin.cli.probe", "linear probing on extracted features"),
    "finetune": ("marlin.cli.finetune", "fine-tune the encoder with a task head"),
    "evaluate": ("marlin.cli.evaluate", "evaluate a probed or fine-tuned model"),
    "gradcam": ("marlin.cli.gradcam", "Grad-CAM heat maps over the frames of a clip"),
    "lipsync": ("marlin.cli.lipsync", "Wav2Lip with a MARLIN face encoder; SyncNet; LSE metrics"),
}


def _available():
    out = {}
    for name, (mod, help_) in COMMANDS.items():
        if importlib.util.find_spec(mod) is not None:
            out[name] = (mod, help_)
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = _available()
    parser = argparse.ArgumentParser(prog="marlin", description="MARLIN toolkit for facial video representation learning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in commands.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"marlin: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name = argv[0]
    module = importlib.import_module(commands[name][0])
    cmd_parser = argparse.ArgumentParser(prog=f"marlin {name}", description=commands[name][1])
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    return int(module.run(args) or 0)
