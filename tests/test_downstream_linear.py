"""In-memory linear probing and few-shot subsets."""
import numpy as np
import pytest

from marlin.downstream import linear_probe, logistic_probe
from marlin.downstream.fewshot import few_shot_indices, parse_fraction


def _data(seed=0, n=300, d=16, kind="multiclass"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, 4))
    if kind == "multiclass":
        y = (x @ w).argmax(1)
    elif kind == "multilabel":
        y = (x @ w > 0).astype(int)
    else:
        y = (x @ w[:, 0] > 0).astype(int)
    return x, y


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "binary"])
def test_linear_probe_learns_and_is_deterministic(kind):
    x, y = _data(kind=kind)
    split = lambda a: (a[:200], a[200:250], a[250:])  # noqa: E731
    (xtr, xva, xte), (ytr, yva, yte) = split(x), split(y)
    fast = dict(lr=1e-2, max_epochs=150)
    r1 = linear_probe(xtr, ytr, xva, yva, xte, yte, task_type=kind, seed=3, **fast)
    r2 = linear_probe(xtr, ytr, xva, yva, xte, yte, task_type=kind, seed=3, **fast)
    assert r1["test"] == r2["test"] and r1["best_epoch"] == r2["best_epoch"]
    assert r1["test"]["acc"] > 0.85, r1["test"]
    assert r1["test"]["auc"] > 0.9
    # features unrelated to the labels: chance level
    noise = np.random.default_rng(1).normal(size=x.shape).astype(np.float32)
    rn = linear_probe(*split(noise)[:1], ytr, noise[200:250], yva, noise[250:], yte, task_type=kind, **fast)
    assert rn["test"]["auc"] < r1["test"]["auc"] - 0.2


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "binary"])
def test_logistic_probe_learns_converges_and_is_deterministic(kind):
    import torch

    from marlin.downstream.linear import LOGISTIC_PENALTIES, fit_logistic
    from marlin.downstream.tasks import infer_task

    x, y = _data(kind=kind)
    split = lambda a: (a[:200], a[200:250], a[250:])  # noqa: E731
    (xtr, xva, xte), (ytr, yva, yte) = split(x), split(y)
    r1 = logistic_probe(xtr, ytr, xva, yva, xte, yte, task_type=kind)
    r2 = logistic_probe(xtr, ytr, xva, yva, xte, yte, task_type=kind)
    assert r1["test"] == r2["test"] and r1["penalty"] == r2["penalty"]
    assert set(r1["val_by_penalty"]) == set(LOGISTIC_PENALTIES) and r1["penalty"] in LOGISTIC_PENALTIES
    assert r1["val"][r1["task"]["monitor"]] == max(r1["val_by_penalty"].values())
    assert r1["test"]["acc" if kind == "multiclass" else "auc"] > 0.85
    # fitted to the optimum: the gradient of the penalised loss vanishes, from a cold or a warm start alike
    task = infer_task(y, kind)
    head = fit_logistic(task, xtr, ytr, 0.1)
    warm = fit_logistic(task, xtr, ytr, 0.1, fit_logistic(task, xtr, ytr, 1.0))
    loss = task.loss_fn()(head(torch.as_tensor(xtr)), task.target_tensor(ytr)) + 0.05 * head.weight.pow(2).sum()
    grads = torch.autograd.grad(loss, list(head.parameters()))
    assert max(float(g.abs().max()) for g in grads) < 1e-4
    torch.testing.assert_close(warm.weight, head.weight, atol=1e-3, rtol=1e-3)


def test_linear_probe_rejects_bad_targets():
    x, _ = _data()
    with pytest.raises(ValueError, match="multi-label"):
        linear_probe(x, np.zeros(300), x, np.zeros(300), x, np.zeros(300), task_type="multilabel",
                     label_names=["a", "b"])


def test_few_shot_is_stratified_reproducible_and_nested():
    y = np.repeat([0, 1, 2], [100, 50, 10])
    for f in (0.5, 0.1, 0.01):
        idx = few_shot_indices(y, f, "multiclass", seed=7)
        counts = np.bincount(y[idx], minlength=3)
        assert list(counts) == [max(1, round(f * n)) for n in (100, 50, 10)]
        assert np.array_equal(idx, few_shot_indices(y, f, "multiclass", seed=7))
    assert not np.array_equal(few_shot_indices(y, 0.1, "multiclass", 1), few_shot_indices(y, 0.1, "multiclass", 2))
    small, large = few_shot_indices(y, 0.1, "multiclass", 0), few_shot_indices(y, 0.5, "multiclass", 0)
    assert set(small) <= set(large)
    assert len(few_shot_indices(y, 1.0, "multiclass")) == len(y)


def test_few_shot_multilabel_keeps_every_label():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 6)) < [0.5, 0.3, 0.1, 0.05, 0.02, 0.3]).astype(int)
    idx = few_shot_indices(y, 0.1, "multilabel", seed=0)
    assert 30 <= len(idx) <= 50
    assert (y[idx].sum(0) > 0).all()


def test_parse_fraction():
    assert parse_fraction("10%") == pytest.approx(0.1)
    assert parse_fraction(0.5) == 0.5
    with pytest.raises(ValueError):
        parse_fraction("150%")
