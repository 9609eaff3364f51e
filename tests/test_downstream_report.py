"""Results files: mean ± std over runs per few-shot fraction, per-label table, atomic JSON."""
import json

import pytest

from marlin.downstream.report import summarize, write_results


def _run(name, frac, seed, auc, acc):
    test = {"acc": acc, "wacc": acc, "f1": 0.5, "auc": auc,
            "per_label": {"smile": {"acc": acc, "wacc": acc, "f1": 0.5, "auc": auc}}}
    return {"name": name, "fold": 1, "seed": seed, "few_shot": frac, "n_train": 10, "best_epoch": 3, "test": test}


def test_summary_and_markdown(tmp_path):
    runs = [_run("a", 1.0, 0, 0.8, 0.7), _run("b", 1.0, 1, 0.6, 0.5), _run("c", 0.1, 0, 0.55, 0.5)]
    s = summarize(runs, "multilabel")
    assert [r["few_shot"] for r in s] == [1.0, 0.1]
    assert s[0]["auc"] == pytest.approx(0.7) and s[0]["auc_std"] == pytest.approx(0.1) and s[0]["runs"] == 2
    data = write_results(tmp_path, "T", "multilabel", runs, {"mode": "probe"}, notes=["no validation"])
    assert json.loads((tmp_path / "metrics.json").read_text())["summary"] == data["summary"]
    md = (tmp_path / "results.md").read_text()
    assert "| 100% | 2 | 0.6000 ± 0.1000 | 0.6000 ± 0.1000 | 0.5000 ± 0.0000 | 0.7000 ± 0.1000 |" in md
    assert "| smile | 0.7000 | 0.7000 | 0.5000 | 0.8000 |" in md and "- no validation" in md
    assert not list(tmp_path.glob(".*tmp*"))
