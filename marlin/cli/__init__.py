"""The `marlin` command. Each subcommand lives in its own module ``marlin.cli.<name>`` that defines
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their command runs.

Errors end here: a subcommand raises, :func:`main` prints one line ``marlin <command>: error: <message>`` and
returns the exit code of :mod:`marlin.errors` (``--debug`` anywhere before ``--`` shows the traceback)."""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import sys
import traceback

from .. import errors

# name -> (module, one-line help, the extra it needs beyond the core install)
COMMANDS = {
    "demo": ("marlin.cli.demo", "run the whole system end to end on a synthetic world (CPU, minutes)", "demo"),
    "ablate": ("marlin.cli.ablate", "the paper's ablations (modules, masking, ratio, encoder) pretrained and probed",
               "demo"),
    "extract": ("marlin.cli.extract", "extract MARLIN features from videos", "face"),
    "preprocess": ("marlin.cli.preprocess", "detect, track, crop and parse faces in videos", "face"),
    "synth": ("marlin.cli.synth", "generate a synthetic talking-face dataset", "synth"),
    "shard": ("marlin.cli.shard", "write preprocessed face clips as WebDataset tar shards", "train"),
    "pretrain": ("marlin.cli.pretrain", "pretrain MARLIN (Fasking MAE + adversarial)", "train"),
    "probe": ("marlin.cli.probe", "linear probing on extracted features", "downstream"),
    "finetune": ("marlin.cli.finetune", "fine-tune the encoder with a task head", "downstream"),
    "evaluate": ("marlin.cli.evaluate", "evaluate a probed or fine-tuned model", "downstream"),
    "predict": ("marlin.cli.predict", "apply a probed or fine-tuned model to new videos", "downstream"),
    "reconstruct": ("marlin.cli.reconstruct", "what a full checkpoint rebuilds from a masked clip (mp4, PNG, loss)",
                    None),
    "gradcam": ("marlin.cli.gradcam", "Grad-CAM heat maps over the frames of a clip", "downstream"),
    "lipsync": ("marlin.cli.lipsync", "Wav2Lip with a MARLIN face encoder; SyncNet; LSE metrics", "lipsync"),
    "convert": ("marlin.cli.convert", "convert a model between official, Hugging Face, VideoMAE and safetensors", None),
}


EPILOG = ("exit codes: 0 done; 1 some inputs failed (listed); 2 bad usage, input, configuration or checkpoint; "
          "3 optional dependency missing; 4 unexpected error (a bug: rerun with --debug); 130 interrupted")


def _available():
    return {name: spec for name, spec in COMMANDS.items() if importlib.util.find_spec(spec[0]) is not None}


def _pop_debug(argv: list[str]) -> tuple[list[str], bool]:
    """Remove every ``--debug`` before a ``--`` (it is global: before or after the subcommand)."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--debug"]
    return kept + argv[end:], len(kept) < end


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def main(argv=None) -> int:
    """Run ``marlin ARGV``; returns the exit code (argparse's own usage errors exit with 2)."""
    argv, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    commands = _available()
    parser = argparse.ArgumentParser(prog="marlin", epilog=EPILOG,
                                     description="MARLIN toolkit for facial video representation learning.")
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_, _) in commands.items():
        sub.add_parser(name, help=help_, add_help=False)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"marlin: error: unknown command {argv[0]!r}", file=sys.stderr)
            return errors.BAD_INPUT
        parser.print_help()
        return errors.OK
    name, label = argv[0], f"marlin {argv[0]}"
    module_name, help_, extra = commands[name]
    try:
        module = importlib.import_module(module_name)
        cmd_parser = argparse.ArgumentParser(prog=label, description=help_, epilog=EPILOG)
        module.add_arguments(cmd_parser)
        _add_debug(cmd_parser)
        args = cmd_parser.parse_args(argv[1:])
        args.debug = debug  # popped from argv above, wherever it stood
        if isinstance(getattr(args, "action", None), str):  # subcommands with actions: `marlin lipsync train`
            label = f"{label} {args.action}"
        return int(module.run(args) or 0)
    except SystemExit as e:
        if not isinstance(e.code, str):  # argparse (--help, usage errors) and explicit exit codes
            raise
        return _report(label, errors.BAD_INPUT, e.code, e, debug)
    except BaseException as e:  # noqa: BLE001 - the one place where errors end
        code, message = errors.classify(e, extra)
        return _report(label, code, message, e, debug)


def add_no_progress(parser: argparse.ArgumentParser, *aliases: str, help: str = "no progress bars") -> None:
    """Every command that shows progress takes ``--no-progress`` (read as ``args.no_progress``); ``aliases``
    keep a command's older spelling (``--quiet``) working."""
    parser.add_argument("--no-progress", *aliases, dest="no_progress", action="store_true",
                        help=f"{help} (e.g. in a batch job's log)")


def quiet_libraries() -> None:
    """``--quiet``: libraries' INFO lines (Lightning's "GPU available ..." and tips) stay off stderr; warnings and
    errors still show. Lightning sets its loggers to INFO when imported, so they are imported first."""
    import logging

    for name in ("lightning.pytorch", "lightning.fabric"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
        logging.getLogger(name).setLevel(logging.WARNING)


def _report(label: str, code: int, message: str, err: BaseException, debug: bool) -> int:
    """Print ``label: error: message`` (with the traceback under --debug); return ``code``."""
    if debug:
        traceback.print_exception(err)
    sys.stdout.flush()
    print(f"{label}: error: {message}", file=sys.stderr)
    return code
