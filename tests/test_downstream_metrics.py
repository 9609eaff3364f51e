"""Metric values against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from marlin.downstream.metrics import compute_metrics


def test_binary_hand_computed():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.1])
    y = np.array([1, 1, 1, 0, 0])
    m = compute_metrics("binary", p, y)
    # preds 1 1 0 1 0: tp 2, fn 1, fp 1, tn 1
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["wacc"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["auc"] == pytest.approx(5 / 6)  # 5 of 6 positive/negative pairs ordered
    # logits give the same values
    logits = torch.logit(torch.tensor(p))
    m2 = compute_metrics("binary", logits[:, None], y)
    for k in ("acc", "wacc", "f1", "macro_f1", "auc"):
        assert m2[k] == pytest.approx(m[k], abs=1e-6)


def test_multiclass_hand_computed():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0, 2])
    scores = np.eye(3)[pred] * 0.8 + 0.2 / 3
    m = compute_metrics("multiclass", scores, y, label_names=["a", "b", "c"])
    assert m["war"] == m["acc"] == pytest.approx(5 / 7)
    assert m["uar"] == pytest.approx((1 / 2 + 1 + 2 / 3) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.8) / 3)
    assert m["per_label"]["c"]["recall"] == pytest.approx(2 / 3)
    assert 0 <= m["auc"] <= 1


def test_multiclass_uar_ignores_absent_classes():
    y = np.array([0, 0, 1])
    scores = np.eye(4)[[0, 3, 1]]
    m = compute_metrics("multiclass", scores, y)
    assert m["uar"] == pytest.approx(0.75)
    assert m["war"] == pytest.approx(2 / 3)


def test_multilabel_hand_computed_and_single_class_label():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    p = np.array([[0.8, 0.3, 0.1], [0.6, 0.7, 0.2], [0.4, 0.9, 0.3], [0.1, 0.2, 0.4]])
    m = compute_metrics("multilabel", p, y, label_names=["x", "y", "z"])
    assert m["per_label"]["x"]["acc"] == pytest.approx(0.5)
    assert m["per_label"]["x"]["auc"] == pytest.approx(3 / 4)
    assert m["per_label"]["y"]["auc"] == pytest.approx(1.0)
    assert math.isnan(m["per_label"]["z"]["auc"])  # a single class: undefined, left out of the mean
    assert m["auc_label_mean"] == pytest.approx((3 / 4 + 1) / 2)
    # official: one AUROC over the 12 flattened pairs: 30.5 of 32 positive/negative pairs ordered (a tie 0.4/0.4)
    assert m["auc"] == pytest.approx(30.5 / 32)
    assert m["acc"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["f1"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="task_type"):
        compute_metrics("regression", [0.1], [1])
    with pytest.raises(ValueError, match="predictions for"):
        compute_metrics("binary", [0.1, 0.2], [1])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics("multiclass", np.eye(2), [0, 2])


def _rank_auc(scores, targets) -> float:
    """Reference ROC AUC: the Mann-Whitney statistic with average ranks for ties."""
    s, t = np.asarray(scores, float).ravel(), np.asarray(targets).ravel().astype(bool)
    order = np.argsort(s, kind="stable")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # average the ranks of tied scores
        tied = s == v
        ranks[tied] = ranks[tied].mean()
    n1, n0 = int(t.sum()), int((~t).sum())
    return float((ranks[t].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_multilabel_auc_is_the_official_flattened_auroc_and_label_mean_is_separate():
    """CelebV-HQ: the official evaluation takes one binary AUROC over all N x L predictions; on imbalanced
    labels it differs from the mean of per-label AUCs, which is reported as auc_label_mean."""
    rng = np.random.default_rng(3)
    n, rates = 400, np.array([0.03, 0.1, 0.3, 0.5, 0.8])  # imbalanced labels, as CelebV-HQ's
    y = (rng.random((n, len(rates))) < rates).astype(int)
    logits = y * np.array([2.5, 1.5, 1.0, 0.6, 0.3]) + rng.normal(0, 1, y.shape) + np.log(rates / (1 - rates))
    m = compute_metrics("multilabel", logits, y, label_names=list("abcde"))
    flat, per_label = _rank_auc(logits, y), [_rank_auc(logits[:, j], y[:, j]) for j in range(y.shape[1])]
    assert m["auc"] == pytest.approx(flat, abs=1e-5)
    assert m["auc_label_mean"] == pytest.approx(np.mean(per_label), abs=1e-5)
    assert [m["per_label"][c]["auc"] for c in "abcde"] == pytest.approx(per_label, abs=1e-5)
    assert abs(m["auc"] - m["auc_label_mean"]) > 0.01  # two different metrics on such data
    # the official code's accuracy: ((sigmoid > 0.5) == y) averaged over all N x L entries
    assert m["acc"] == pytest.approx(((logits > 0) == y).mean())
    # tied scores (probabilities rounded to one decimal) still match the reference
    p = np.round(1 / (1 + np.exp(-logits)), 1)
    assert compute_metrics("multilabel", p, y)["auc"] == pytest.approx(_rank_auc(p, y), abs=1e-5)


def test_binary_per_class_table_uses_class_names():
    m = compute_metrics("binary", np.array([0.9, 0.8, 0.3, 0.6, 0.1]), np.array([1, 1, 1, 0, 0]),
                        label_names=("real", "fake"))
    assert m["per_label"] == {"real": {"recall": 0.5, "f1": pytest.approx(0.5)},
                              "fake": {"recall": pytest.approx(2 / 3), "f1": pytest.approx(2 / 3)}}
    with pytest.raises(ValueError, match="class names"):
        compute_metrics("multiclass", np.eye(3), [0, 1, 2], label_names=["a", "b"])
