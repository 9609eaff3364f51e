"""The training loop shared by linear probing and fine-tuning: Adam (β 0.5, 0.9), learning rate reduced on a
validation plateau, early stopping on the validation metric, best weights kept; deterministic under a seed."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .metrics import compute_metrics
from .tasks import Task


@dataclass
class TrainConfig:
    """Optimisation settings (defaults as the paper: Adam β (0.5, 0.9), lr 1e-4, no weight decay)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    max_epochs: int = 100
    batch_size: int | None = 32  # None: full batch (in-memory linear probing)
    patience: int = 10  # early stopping: evaluations improving neither the metric nor the loss
    lr_patience: int = 4  # evaluations without any improvement before the learning rate is reduced
    lr_factor: float = 0.5
    min_lr: float = 1e-7
    eval_every: int = 1  # epochs between validations
    seed: int = 0

    def __post_init__(self):
        if self.max_epochs < 1 or self.patience < 1 or self.eval_every < 1 or self.lr <= 0:
            raise ValueError(f"training options need max_epochs, patience, eval_every >= 1 and lr > 0: {self}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None (full batch), got {self.batch_size}")

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "train") -> "TrainConfig":
        """Checked through the config layer: unknown keys are errors with a suggestion, values converted."""
        from ..config import from_dict

        return from_dict(cls, d or {}, where)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class FitResult:
    best_state: dict
    best_epoch: int
    best_score: float
    monitor: str
    val_metrics: dict
    history: list[dict] = field(default_factory=list)


def _score(metrics: dict, loss: float, monitor: str) -> float:
    return -loss if monitor == "loss" else metrics.get(monitor, float("nan"))


def fit(model: nn.Module, task: Task, batches: Callable[[torch.Generator], Iterable[tuple[Tensor, Tensor]]],
        evaluate: Callable[[nn.Module], tuple[Tensor, Tensor]], cfg: TrainConfig, params=None,
        progress: bool = True, desc: str = "train") -> FitResult:
    """Train ``model`` (logits (B, K)) on ``batches(generator)`` (one epoch of (x, targets) pairs).

    ``evaluate(model)`` returns validation logits (N, K) and targets. The best state by ``task.metric`` (ties
    broken by the validation loss; the loss alone when the metric is undefined, e.g. a single class) is
    loaded and returned. Training stops after ``patience`` evaluations that improve neither the metric
    nor the validation loss; the learning rate is multiplied by ``lr_factor`` after ``lr_patience`` such.
    """
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn = task.loss_fn()
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr=cfg.lr, betas=cfg.betas,
                           weight_decay=cfg.weight_decay)
    monitor, best, best_epoch, best_state, best_metrics = task.metric, (-math.inf, -math.inf), -1, None, {}
    history, stale, plateau, best_loss = [], 0, 0, math.inf
    bar = tqdm(range(1, cfg.max_epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        total, count = 0.0, 0
        for x, y in batches(gen):
            logits = model(x)
            loss = loss_fn(logits, task.target_tensor(y).to(logits.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(x), count + len(x)
        if epoch % cfg.eval_every and epoch != cfg.max_epochs:
            continue
        model.eval()
        with torch.no_grad():
            logits, y = evaluate(model)
            logits = logits.float().cpu()
            val_loss = float(loss_fn(logits, task.target_tensor(y)))
        metrics = compute_metrics(task.kind, task.scores(logits), y)
        if best_state is None and math.isnan(metrics.get(monitor, float("nan"))):
            monitor = "loss"  # e.g. AUC undefined on a tiny validation set
        score = _score(metrics, val_loss, monitor)
        history.append({"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": val_loss,
                         "lr": opt.param_groups[0]["lr"], **{k: v for k, v in metrics.items() if k != "n"}})
        # the metric decides; the validation loss breaks ties (accuracy moves in steps on small sets)
        key = (score if not math.isnan(score) else -math.inf, -val_loss)
        progress_made = val_loss < best_loss  # patience runs out only when neither metric nor loss improves
        best_loss = min(best_loss, val_loss)
        if key > best:
            best, best_epoch, best_metrics, progress_made = key, epoch, metrics, True
            best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        stale, plateau = (0, 0) if progress_made else (stale + 1, plateau + 1)
        if plateau > cfg.lr_patience:  # reduce the learning rate on a plateau
            plateau = 0
            for group in opt.param_groups:
                group["lr"] = max(group["lr"] * cfg.lr_factor, cfg.min_lr)
        bar.set_postfix(loss=f"{total / max(count, 1):.4f}", **{f"val_{monitor}": f"{score:.4f}"}, refresh=False)
        if stale >= cfg.patience:
            break
    bar.close()
    model.load_state_dict(best_state)
    return FitResult(best_state, best_epoch, best[0], monitor, best_metrics, history)
