"""The training loop shared by linear probing and fine-tuning: Adam (β 0.5, 0.9), learning rate reduced on a
validation plateau, early stopping on the validation metric, best weights kept; deterministic under a seed."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from ..loop import STATE_KIND, TrainState, progress_bar
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


def _train_epoch(model: nn.Module, task: Task, loss_fn, opt, batches) -> float:
    """One pass over ``batches``; returns the mean training loss. The step losses stay on the device and are
    read once at the end (no synchronisation per step), then summed on the host as each step's value would be."""
    model.train()
    losses, sizes = [], []
    for x, y in batches:
        logits = model(x)
        loss = loss_fn(logits, task.target_tensor(y).to(logits.device, non_blocking=True))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        sizes.append(len(x))
    total, count = 0.0, 0
    for value, n in zip(torch.stack(losses).tolist() if losses else [], sizes):
        total, count = total + value * n, count + n
    return total / max(count, 1)


@torch.no_grad()
def _validate(model: nn.Module, task: Task, loss_fn, evaluate) -> tuple[dict, float]:
    model.eval()
    logits, y = evaluate(model)
    logits = logits.float().cpu()
    return compute_metrics(task.kind, task.scores(logits), y), float(loss_fn(logits, task.target_tensor(y)))


def _judge(s: dict, epoch: int, metrics: dict, val_loss: float) -> tuple[float, bool]:
    """Count one evaluation into the loop state ``s``; returns (its score, whether it is the best so far)."""
    if s["best_epoch"] < 0 and math.isnan(metrics.get(s["monitor"], float("nan"))):
        s["monitor"] = "loss"  # e.g. AUC undefined on a tiny validation set
    score = _score(metrics, val_loss, s["monitor"])
    # the metric decides; the validation loss breaks ties (accuracy moves in steps on small sets)
    key = (score if not math.isnan(score) else -math.inf, -val_loss)
    is_best = key > tuple(s["best"])
    if is_best:
        s.update(best=list(key), best_epoch=epoch, best_metrics=metrics)
    improved = is_best or val_loss < s["best_loss"]  # patience runs out when neither metric nor loss improves
    s["best_loss"] = min(s["best_loss"], val_loss)
    s["stale"], s["plateau"] = (0, 0) if improved else (s["stale"] + 1, s["plateau"] + 1)
    return score, is_best


def fit(model: nn.Module, task: Task, batches: Callable[[torch.Generator], Iterable[tuple[Tensor, Tensor]]],
        evaluate: Callable[[nn.Module], tuple[Tensor, Tensor]], cfg: TrainConfig, params=None,
        progress: bool = True, desc: str = "train", checkpoint=None, identity: dict | None = None) -> FitResult:
    """Train ``model`` (logits (B, K)) on ``batches(generator)`` (one epoch of (x, targets) pairs).

    ``evaluate(model)`` returns validation logits (N, K) and targets. The best state by ``task.metric`` (ties
    broken by the validation loss; the loss alone when the metric is undefined, e.g. a single class) is
    loaded and returned. Training stops after ``patience`` evaluations that improve neither the metric
    nor the validation loss; the learning rate is multiplied by ``lr_factor`` after ``lr_patience`` such.

    ``checkpoint``: the state is saved there after every evaluation (`marlin.loop.TrainState`) and resumed from
    when the file exists, to the same result as an uninterrupted run; a state saved under another ``cfg`` or
    ``identity`` (a dict of whatever else defines the run) is refused, the differing fields named.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn = task.loss_fn()
    opt = torch.optim.Adam(model.parameters() if params is None else params, lr=cfg.lr, betas=cfg.betas,
                           weight_decay=cfg.weight_decay)
    # the loop's state besides weights: best = (score, -val_loss) of the best evaluation so far
    s = {"monitor": task.metric, "best": [-math.inf, -math.inf], "best_epoch": -1, "best_metrics": {},
         "stale": 0, "plateau": 0, "best_loss": math.inf, "stopped": False}
    epoch, history, best_state, state = 0, [], None, None
    if checkpoint is not None:
        state = TrainState(checkpoint, STATE_KIND, {"train": cfg.to_dict(), **(identity or {})},
                           {"model": model, "optimizer": opt}, generators={"batches": gen})
        if ck := state.resume():
            epoch, history, s, best_state = ck["step"], ck["history"], ck["loop"], ck.get("best")
    with progress_bar(cfg.max_epochs, desc, epoch, progress, unit="epoch", leave=False) as bar:
        while epoch < cfg.max_epochs and not s["stopped"]:
            epoch += 1
            train_loss = _train_epoch(model, task, loss_fn, opt, batches(gen))
            bar.update(1)
            if epoch % cfg.eval_every and epoch != cfg.max_epochs:
                continue
            metrics, val_loss = _validate(model, task, loss_fn, evaluate)
            score, is_best = _judge(s, epoch, metrics, val_loss)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                            "lr": opt.param_groups[0]["lr"], **{k: v for k, v in metrics.items() if k != "n"}})
            if is_best:
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            if s["plateau"] > cfg.lr_patience:  # reduce the learning rate on a plateau
                s["plateau"] = 0
                for group in opt.param_groups:
                    group["lr"] = max(group["lr"] * cfg.lr_factor, cfg.min_lr)
            s["stopped"] = s["stale"] >= cfg.patience
            bar.set_postfix(loss=f"{train_loss:.4f}", **{f"val_{s['monitor']}": f"{score:.4f}"}, refresh=False)
            if state is not None:
                state.save(epoch, history, {"best": best_state}, loop=s)
    model.load_state_dict(best_state)
    return FitResult(best_state, s["best_epoch"], s["best"][0], s["monitor"], s["best_metrics"], history)
