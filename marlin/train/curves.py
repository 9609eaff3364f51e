"""curves.png: a pretraining run's history drawn, so its course is seen without starting TensorBoard.

Three panels from the rows of history.csv: the reconstruction loss on the masked tubelets (training, and the
validation rows as points), the adversarial terms (when the run has them) and the learning rate."""
from __future__ import annotations

import math
from pathlib import Path

CURVES = "curves.png"


def plot_history(history: list[dict], path) -> Path:
    """Draw ``history`` (`marlin.train.history.read_history` rows) to the PNG ``path``, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
