"""The shared training loop `marlin.downstream.train.fit`: the best state is restored after early stopping, the
learning rate is reduced on a plateau, training stops when patience runs out."""
import numpy as np
import pytest
import torch
from torch import nn

from marlin.downstream.tasks import Task
from marlin.downstream.train import TrainConfig, fit

TASK = Task("t", "binary", ("neg", "pos"))
Y_VAL = np.array([0, 1, 0, 1])


def _batches(gen):
    """One epoch: a single fixed batch (the model keeps moving, so every epoch changes the weights)."""
    yield torch.ones(4, 2), np.array([1, 1, 1, 1])


class ScriptedValidation:
    """Validation whose AUC follows a script (1-based epochs): 1.0 at the `good` epochs, 0.0 at the others,
    with ever more confident scores, so after a good epoch neither the AUC nor the loss improves.
    Records the model's weights at each validation."""

    def __init__(self, good_epochs: set[int]):
        self.good, self.calls, self.weights = good_epochs, 0, []

    def __call__(self, model: nn.Module):
        self.calls += 1
        self.weights.append(model.weight.detach().clone())
        sign = 1.0 if self.calls in self.good else -1.0
        logits = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]]) * sign * (1.0 + self.calls)
        return logits, torch.as_tensor(Y_VAL)


def _model():
    torch.manual_seed(0)
    return nn.Linear(2, 1)


def test_best_state_is_restored_after_early_stopping():
    """The validation metric peaks at epoch 3; training goes on until patience runs out, and the model handed
    back holds the weights of epoch 3, not those of the last epoch."""
    model, val = _model(), ScriptedValidation({3})
    cfg = TrainConfig(lr=0.1, max_epochs=50, patience=4, lr_patience=100, batch_size=None)
    res = fit(model, TASK, _batches, val, cfg, progress=False)
    assert res.best_epoch == 3 and len(res.history) == 3 + 4  # stopped after 4 evaluations without progress
    assert not torch.equal(val.weights[2], val.weights[-1])  # training moved the weights after the best epoch
    torch.testing.assert_close(model.weight.detach(), val.weights[2], rtol=0, atol=0)
    torch.testing.assert_close(res.best_state["weight"], val.weights[2], rtol=0, atol=0)
    assert res.best_score == res.val_metrics["auc"] == res.history[2]["auc"]


@pytest.mark.parametrize("lr_patience", [1, 2])
def test_learning_rate_is_reduced_on_a_plateau(lr_patience):
    """After `lr_patience` + 1 evaluations that improve neither the metric nor the loss, the learning rate is
    multiplied by lr_factor (and never goes below min_lr); the history records the rate of each epoch."""
    lr, factor, min_lr = 0.1, 0.5, 0.02
    model, val = _model(), ScriptedValidation({1})  # epoch 1 is the best; every later epoch is worse
    cfg = TrainConfig(lr=lr, lr_factor=factor, min_lr=min_lr, max_epochs=12, patience=100,
                      lr_patience=lr_patience, batch_size=None)
    res = fit(model, TASK, _batches, val, cfg, progress=False)
    got = [h["lr"] for h in res.history]
    expected, current, plateau = [], lr, 0
    for epoch in range(1, 13):
        expected.append(current)
        plateau = 0 if epoch == 1 else plateau + 1
        if plateau > lr_patience:
            plateau, current = 0, max(current * factor, min_lr)
    assert got == pytest.approx(expected)
    assert got[0] == lr and min(got) == min_lr and got[lr_patience + 2] == lr * factor


def test_learning_rate_reduction_changes_the_updates():
    """The reduced rate is the one the optimiser uses: the weight steps shrink by lr_factor."""
    model, val = _model(), ScriptedValidation({1})
    cfg = TrainConfig(lr=0.1, lr_factor=0.5, min_lr=1e-7, max_epochs=6, patience=100, lr_patience=1,
                      batch_size=None, betas=(0.0, 0.0))  # no momentum: Adam steps have size ~lr
    fit(model, TASK, _batches, val, cfg, progress=False)
    steps = [float((b - a).abs().max()) for a, b in zip(val.weights, val.weights[1:])]
    # epochs 1-3 at lr 0.1, reduced after epoch 3's validation: epochs 4-5 step 0.05, then 0.025
    assert steps[:2] == pytest.approx([0.1, 0.1], rel=1e-3)
    assert steps[2:4] == pytest.approx([0.05, 0.05], rel=1e-3)
