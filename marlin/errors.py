"""Errors a user can act on, the optional-dependency helper, and the `marlin` command's exit codes.

The core install (model, checkpoints, feature extraction) needs torch, numpy, av, safetensors, pyyaml and
tqdm. Everything heavier belongs to an extra and is imported through :func:`require`, which names the extra
to install when the package is missing.
"""
from __future__ import annotations

import importlib
import sys

# Exit codes of the `marlin` command (documented in README.md, "Errors and exit codes").
OK = 0
SOME_FAILED = 1  # the run completed, but some inputs failed (listed in the run's failures file)
BAD_INPUT = 2  # usage, input, configuration, checkpoint or output location is wrong; nothing was done
MISSING_EXTRA = 3  # an optional dependency is not installed
INTERNAL = 4  # an unexpected error: a bug (run with --debug for the traceback)
INTERRUPTED = 130  # Ctrl-C

# extra -> the top-level modules it provides (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "face": ("cv2", "ai_edge_litert"),
    "synth": ("cv2",),
    "train": ("lightning", "tensorboard", "cv2", "matplotlib"),
    "downstream": ("torchmetrics", "h5py", "cv2", "matplotlib"),
    "lipsync": ("cv2", "matplotlib"),
    "demo": ("matplotlib", "lightning", "tensorboard", "torchmetrics", "cv2"),
    "hf": ("huggingface_hub", "transformers"),
    "onnx": ("onnx", "onnxruntime"),
    "openvino": ("onnx", "openvino"),
}


class MarlinError(Exception):
    """An error in what the user asked for (input, configuration, environment), with a message that says
    what to do; the command line prints it as one line, without a traceback."""


class MissingExtraError(MarlinError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it.

    ``name``: the missing module; ``extra``, ``what`` (what needed it) and ``cause`` rebuild the message for
    another extra (`marlin demo` names the demo extra where the synthetic world alone would name synth)."""

    def __init__(self, message: str, name: str | None = None, extra: str | None = None, what: str | None = None,
                 cause: str | None = None):
        super().__init__(message, name=name)
        self.extra, self.what, self.cause = extra, what, cause


class NoUsableDataError(MarlinError, RuntimeError):
    """Every input of a run turned out unreadable (a RuntimeError too, for callers that caught one)."""


def install_hint(extra: str) -> str:
    return f"pip install 'facemarlin-toolkit[{extra}]'"


def missing_extra(err: ImportError, extra: str | None = None, what: str | None = None) -> MissingExtraError:
    """The MissingExtraError for ``err`` (an ImportError of an optional package): names the package, and
    ``extra`` when that extra provides it, else the first extra that does. ``what`` says what needed it."""
    module = (err.name or "").split(".")[0]
    if isinstance(err, MissingExtraError):
        if err.extra is None or extra in (None, err.extra) or module not in EXTRAS.get(extra, ()):
            return err
        what, cause = what or err.what, err.cause
    else:
        cause = f"{module} is not installed" if isinstance(err, ModuleNotFoundError) and module else f"{err}"
    if extra is None or module not in EXTRAS.get(extra, (module,)):
        extra = next((e for e, mods in EXTRAS.items() if module in mods), extra)
    if extra is None:
        return MissingExtraError(f"{what or 'this'} needs a package that cannot be imported ({cause})", err.name)
    need = f"{what} needs the '{extra}' extra" if what else f"the '{extra}' extra is missing"
    return MissingExtraError(f"{need} ({cause}): {install_hint(extra)}", err.name, extra, what, cause)


def require(module: str, extra: str, what: str | None = None):
    """Import and return ``module``, or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise missing_extra(e, extra, what) from e


def is_optional_import(err: BaseException) -> bool:
    """True for an ImportError of a package that an extra provides (or a MissingExtraError)."""
    if isinstance(err, MissingExtraError):
        return True
    name = (getattr(err, "name", None) or "").split(".")[0]
    return isinstance(err, ImportError) and any(name in mods for mods in EXTRAS.values())


def classify(err: BaseException, extra: str | None = None) -> tuple[int, str]:
    """(exit code, one-line message) of an exception that ended a command; ``extra`` is the command's extra."""
    if isinstance(err, KeyboardInterrupt):
        return INTERRUPTED, "interrupted"
    if is_optional_import(err):
        return MISSING_EXTRA, str(missing_extra(err, extra))
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return BAD_INPUT, f"{err.filename}: {err.strerror}"
    if isinstance(err, _expected()):
        return BAD_INPUT, str(err) or type(err).__name__
    return INTERNAL, f"{type(err).__name__}: {err} (unexpected; run with --debug for the traceback)"


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """The named exception classes of ``module`` if it is imported (an error of a module that was never
    imported cannot be one of its classes; keeps this module light)."""
    mod = sys.modules.get(module)
    return tuple(getattr(mod, n) for n in names) if mod is not None else ()


def _expected() -> tuple[type, ...]:
    """Exception types that report a problem with the user's input, not a bug."""
    return (MarlinError, ValueError, OSError, *_loaded("marlin.checkpoints", "CheckpointError"),
            *_loaded("marlin.video.io", "VideoError"))
