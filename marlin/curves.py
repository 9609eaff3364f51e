"""curves.png: a run's history drawn, so its course is seen without starting TensorBoard.

Pretraining (`plot_history`): the rows of history.csv, in three panels: the reconstruction loss on the masked
tubelets (training, and the validation rows as points), the adversarial terms (when the run has them) and the
learning rate. A downstream fit (`plot_fit`): its epochs: training and validation loss, the validation metrics
(the monitored one marked at the best epoch) and the learning rate. A step loop's losses (`plot_steps`, lip-sync
training): one panel per loss, each step faint and a running mean over 1 % of the steps on top."""
from __future__ import annotations

import math
from pathlib import Path

CURVES = "curves.png"


def _figure(panels: int, width: float, height: float = 3.6):
    """A figure of ``panels`` axes in a row, made without pyplot: no global backend is switched (a notebook's
    plotting stays as it was) and nothing is left open."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _save(fig, path) -> Path:
    from .atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def plot_history(history: list[dict], path) -> Path:
    """Draw ``history`` (`marlin.train.history.read_history` rows) to the PNG ``path``, atomically."""
    train = [r for r in history if r.get("kind") == "train" and "rec_loss" in r]
    val = [r for r in history if r.get("kind") == "val" and "rec_loss" in r]
    adversarial = any("d_loss" in r for r in train)
    fig, ax = _figure(3, 14)
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
    return _save(fig, path)


def plot_fit(history: list[dict], path, monitor: str | None = None, best_epoch: int | None = None) -> Path:
    """Draw a downstream fit's ``history`` (one dict per evaluated epoch: ``epoch``, ``train_loss``, ``val_loss``,
    ``lr`` and the validation metrics) to the PNG ``path``; ``monitor`` / ``best_epoch``: the metric that chose
    the kept epoch, and that epoch."""
    epochs = [r["epoch"] for r in history]
    fig, ax = _figure(3, 14)
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
    return _save(fig, path)


def plot_steps(history: list, path, max_panels: int = 4) -> Path:
    """Draw a step loop's ``history`` (one number, or a dict of numbers, per step: `marlin.loop.write_history`'s
    rows) to the PNG ``path``: a panel per loss (the first ``max_panels``)."""
    import numpy as np

    rows = [r if isinstance(r, dict) else {"loss": r} for r in history]
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if all(isinstance(r.get(k, 0.0), (int, float)) for r in rows)][:max_panels]
    fig, axes = _figure(max(1, len(keys)), 4.6 * max(1, len(keys)), 3.4)
    steps = np.arange(1, len(rows) + 1)
    width = max(1, len(rows) // 100)
    for ax, key in zip(axes, keys):
        values = np.array([r.get(key, np.nan) for r in rows], np.float64)
        ax.plot(steps, values, lw=0.5, alpha=0.35)
        if width > 1:
            mean = np.convolve(np.nan_to_num(values), np.ones(width) / width, mode="valid")
            ax.plot(steps[width - 1:], mean, lw=1.5, label=f"running mean of {width}")
            ax.legend(fontsize=8)
        ax.set(title=key, xlabel="step")
    return _save(fig, path)
