"""Downstream adaptation of MARLIN: linear probing, fine-tuning, few-shot, dataset adapters, Grad-CAM."""
from .linear import linear_probe, logistic_probe, reduce_clips, train_linear
from .metrics import compute_metrics
from .probe import probe_dataset
from .tasks import Task
from .train import TrainConfig, fit

__all__ = ["linear_probe", "logistic_probe", "probe_dataset", "reduce_clips", "train_linear", "compute_metrics",
           "Task", "TrainConfig", "fit"]
