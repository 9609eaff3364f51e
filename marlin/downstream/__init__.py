"""Downstream adaptation of MARLIN: linear probing, fine-tuning, few-shot, dataset adapters, Grad-CAM.

The names below load on first use, so the configs and flags (`marlin probe --help`) need no extra; the metrics
(`metrics.py`) need the 'downstream' extra and say so in one line."""
import importlib

_EXPORTS = {"linear_probe": "linear", "logistic_probe": "linear", "reduce_clips": "linear", "train_linear": "linear",
            "compute_metrics": "metrics", "Task": "tasks", "TrainConfig": "train", "fit": "train",
            "probe_dataset": "probe", "Prediction": "predict", "Predictor": "predict",
            "predict_videos": "predict", "merge_predictions": "predict"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
