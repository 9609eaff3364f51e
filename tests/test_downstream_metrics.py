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
    assert m["auc"] == pytest.approx((3 / 4 + 1) / 2)
    assert m["acc"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert m["f1"] == pytest.approx((0.5 + 1 + 0) / 3)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="task_type"):
        compute_metrics("regression", [0.1], [1])
    with pytest.raises(ValueError, match="predictions for"):
        compute_metrics("binary", [0.1, 0.2], [1])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics("multiclass", np.eye(2), [0, 2])
