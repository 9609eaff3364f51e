"""Label balance and deterministic splits of the synthetic world."""
import numpy as np

from marlin.synth import ACTION, APPEARANCE, EXPRESSION, sample_labels, split_of


def test_label_balance():
    labs = [sample_labels(5, k) for k in range(1400)]
    app = np.array([lab["appearance"] for lab in labs]).mean(0)
    act = np.array([lab["action"] for lab in labs]).mean(0)
    assert app.shape == (len(APPEARANCE),) and ((app > 0.28) & (app < 0.6)).all(), app
    assert act.shape == (len(ACTION),) and ((act > 0.42) & (act < 0.58)).all(), act
    # black and blond hair exclude each other
    both = np.array([lab["appearance"][0] and lab["appearance"][1] for lab in labs])
    assert not both.any()
    # expression and manipulated are exactly balanced in every block of 14 items
    expr = np.bincount([lab["expression"] for lab in labs], minlength=len(EXPRESSION))
    assert (expr == 200).all()
    man = np.array([lab["manipulated"] for lab in labs])
    assert man.sum() == 700 and all(man[i:i + 14].sum() == 7 for i in range(0, 1400, 14))
    kinds = [lab["manipulation"] for lab, m in zip(labs, man) if m]
    assert min(kinds.count(k) for k in ("swap", "flicker", "mouth")) > 200
    assert all(lab["manipulation"] == "none" for lab, m in zip(labs, man) if not m)


def test_labels_deterministic_and_seed_dependent():
    assert [sample_labels(3, k) for k in range(20)] == [sample_labels(3, k) for k in range(20)]
    assert [sample_labels(3, k) for k in range(20)] != [sample_labels(4, k) for k in range(20)]


def test_splits():
    s = [split_of(0, k) for k in range(1000)]
    assert (s.count("train"), s.count("val"), s.count("test")) == (800, 100, 100)
    assert s[:37] == [split_of(0, k) for k in range(37)]  # independent of how many items exist
    val = [k for k in range(1000) if s[k] == "val"]
    expr = np.bincount([sample_labels(0, k)["expression"] for k in val], minlength=7)
    assert expr.min() >= 5  # every class in the validation split


def test_tasks_table():
    from marlin.synth import TASKS

    assert TASKS["appearance"] == ("multilabel", APPEARANCE) and TASKS["expression"][0] == "multiclass"
    assert TASKS["manipulated"][0] == "binary" and TASKS["action"][1] == ACTION
