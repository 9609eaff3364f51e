"""What a downstream task predicts: its type, outputs, loss and the metric that picks the best model."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .metrics import TASK_TYPES


@dataclass(frozen=True)
class Task:
    """A task: ``kind`` multilabel | multiclass | binary, ``labels`` the label (multi-label) or class names."""

    name: str
    kind: str
    labels: tuple[str, ...] = field(default_factory=tuple)
    monitor: str | None = None  # validation metric for early stopping / best checkpoint

    def __post_init__(self):
        if self.kind not in TASK_TYPES:
            raise ValueError(f"task {self.name!r}: kind must be one of {TASK_TYPES}, got {self.kind!r}")
        if self.kind != "binary" and len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: a {self.kind} task needs at least 2 label names")

    @property
    def num_outputs(self) -> int:
        return 1 if self.kind == "binary" else len(self.labels)

    @property
    def metric(self) -> str:
        """Higher is better: AUC for binary / multi-label, accuracy for multi-class unless set."""
        return self.monitor or ("acc" if self.kind == "multiclass" else "auc")

    def loss_fn(self) -> nn.Module:
        return nn.CrossEntropyLoss() if self.kind == "multiclass" else nn.BCEWithLogitsLoss()

    def target_tensor(self, y) -> Tensor:
        """Targets as the loss expects them: (N,) long (multiclass), (N, L) or (N, 1) float (others)."""
        y = torch.as_tensor(np.asarray(y))
        if self.kind == "multiclass":
            return y.long().view(-1)
        if self.kind == "binary":
            return y.float().view(-1, 1)
        return y.float().view(len(y), -1)

    def scores(self, logits: Tensor) -> Tensor:
        """Logits (N, K) -> the score layout `compute_metrics` expects ((N,) for binary)."""
        return logits[:, 0] if self.kind == "binary" else logits

    def check_targets(self, y, source: str = "targets") -> np.ndarray:
        y = np.asarray(y)
        if self.kind == "multilabel":
            if y.ndim != 2 or y.shape[1] != len(self.labels):
                raise ValueError(f"{source}: expected (N, {len(self.labels)}) multi-label targets, got {y.shape}")
            if not np.isin(y, (0, 1)).all():
                raise ValueError(f"{source}: multi-label targets must be 0/1")
        elif self.kind == "binary":
            if y.ndim != 1 or not np.isin(y, (0, 1)).all():
                raise ValueError(f"{source}: binary targets must be a (N,) array of 0/1")
        else:
            if y.ndim != 1 or (len(y) and (y.min() < 0 or y.max() >= len(self.labels))):
                raise ValueError(f"{source}: multi-class targets must be (N,) ids in [0, {len(self.labels) - 1}]")
        return y

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "labels": list(self.labels), "monitor": self.metric}

    @classmethod
    def from_dict(cls, d: dict) -> "Task":
        return cls(d["name"], d["kind"], tuple(d.get("labels", ())), d.get("monitor"))


def infer_task(y, kind: str, name: str = "task", labels=None) -> Task:
    """A Task for in-memory targets ``y`` (label names default to "0", "1", ...)."""
    y = np.asarray(y)
    if labels is None:
        if kind == "multilabel":
            labels = [str(i) for i in range(y.shape[1])]
        elif kind == "multiclass":
            labels = [str(i) for i in range(int(y.max()) + 1)]
        else:
            labels = ["0", "1"]
    return Task(name, kind, tuple(labels))
