"""Downstream adaptation of MARLIN: linear probing, fine-tuning, few-shot, dataset adapters, Grad-CAM."""
from ..errors import require

require("torchmetrics", "downstream", "downstream evaluation")
from .linear import linear_probe, logistic_probe, reduce_clips, train_linear  # noqa: E402
from .metrics import compute_metrics  # noqa: E402
from .predict import Prediction, Predictor, merge_predictions, predict_videos  # noqa: E402
from .probe import probe_dataset  # noqa: E402
from .tasks import Task  # noqa: E402
from .train import TrainConfig, fit  # noqa: E402

__all__ = ["linear_probe", "logistic_probe", "probe_dataset", "reduce_clips", "train_linear", "compute_metrics",
           "Task", "TrainConfig", "fit", "Prediction", "Predictor", "predict_videos", "merge_predictions"]
