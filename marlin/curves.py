"""curves.png: a run's history drawn, so its course is seen without starting TensorBoard.

Pretraining (`plot_history`): the rows of history.csv, in three panels: the reconstruction loss on the masked
tubelets (training, and the validation rows as points), the adversarial terms (when the run has them) and the
learning rate. A downstream fit (`plot_fit`): its epochs: training and validation loss, the validation metrics
(the monitored one marked at the best epoch) and the learning rate."""
from __future__ import annotations

import math
from pathlib import Path

CURVES = "curves.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    from .atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    fig.clf()
    return path


def plot_history(history: list[dict], path) -> Path:
    """Draw ``history`` (`marlin.train.history.read_history` rows) to the PNG ``path``, atomically."""
    plt = _pyplot()
    train = [r for r in history if r.get("kind") == "train" and "rec_loss" in r]
    val = [r for r in history if r.get("kind") == "val" and "rec_loss" in r]
    adversarial = any("d_loss" in r for r in train)
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    ax[0].plot([r["iteration"] for r in train], [r["rec_loss"] for r in train], lw=1, label="training")
    if val:
        ax[0].plot([r["iteration"] for r in val], [r["rec_loss"] for r in val], "o-", ms=3, lw=1,
                   label="validation")
    ax[0].set(title="reconstruction loss (masked tubelets)", xlabel="iteration", ylabel="MSE")
    if all(r["rec_loss"] > 0 for r in train + val) and train:
        ax[0].set_yscale("log")
    ax[0].legend()
    if adversarial:
        for key, label in (("d_loss", "critic loss"), ("adv_loss", "adversarial loss (weighted)")):
            ax[1].plot([r["iteration"] for r in train], [r.get(key, math.nan) for r in train], lw=1, label=label)
        ax[1].legend()
    else:
        ax[1].text(0.5, 0.5, "no adversarial term (adv_loss: false)", ha="center", va="center",
                   transform=ax[1].transAxes)
    ax[1].set(title="adversarial terms", xlabel="iteration")
    ax[2].plot([r["iteration"] for r in train], [r.get("lr", math.nan) for r in train], lw=1)
    ax[2].set(title="learning rate", xlabel="iteration")
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_fit(history: list[dict], path, monitor: str | None = None, best_epoch: int | None = None) -> Path:
    """Draw a downstream fit's ``history`` (one dict per evaluated epoch: ``epoch``, ``train_loss``, ``val_loss``,
    ``lr`` and the validation metrics) to the PNG ``path``; ``monitor`` / ``best_epoch``: the metric that chose
    the kept epoch, and that epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        ax[0].plot(epochs, [r.get(key, math.nan) for r in history], "o-", ms=3, lw=1, label=label)
    ax[0].set(title="loss", xlabel="epoch")
    ax[0].legend()
    metrics = [k for k in history[0] if k not in ("epoch", "train_loss", "val_loss", "lr")] if history else []
    for key in metrics:
        values = [r.get(key, math.nan) for r in history]
        if all(isinstance(v, (int, float)) for v in values):
            ax[1].plot(epochs, values, "o-", ms=3, lw=2 if key == monitor else 1, label=key)
    if best_epoch is not None and best_epoch > 0:
        ax[1].axvline(best_epoch, color="grey", ls="--", lw=1, label=f"kept: epoch {best_epoch}")
    ax[1].set(title=f"validation metrics{f' (chosen by {monitor})' if monitor else ''}", xlabel="epoch")
    if metrics:
        ax[1].legend(fontsize=8)
    ax[2].plot(epochs, [r.get("lr", math.nan) for r in history], "o-", ms=3, lw=1)
    ax[2].set(title="learning rate", xlabel="epoch", yscale="log")
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path
