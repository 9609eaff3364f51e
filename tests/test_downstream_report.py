"""Results files: mean ± std over runs per few-shot fraction, per-label table, strict JSON, the paper's values."""
import json
import math

import pytest

from marlin.downstream.report import paper_comparison, summarize, write_results


def _run(name, frac, seed, auc, acc):
    test = {"acc": acc, "wacc": acc, "f1": 0.5, "auc": auc, "auc_label_mean": auc - 0.1,
            "per_label": {"smile": {"acc": acc, "wacc": acc, "f1": 0.5, "auc": auc}}}
    return {"name": name, "fold": 1, "seed": seed, "few_shot": frac, "n_train": 10, "best_epoch": 3, "test": test}


def _strict(text: str):
    """json.loads that refuses NaN / Infinity (what strict readers such as jq or JavaScript do)."""
    def refuse(const):
        raise ValueError(f"non-standard JSON constant {const}")
    return json.loads(text, parse_constant=refuse)


def test_summary_and_markdown(tmp_path):
    runs = [_run("a", 1.0, 0, 0.8, 0.7), _run("b", 1.0, 1, 0.6, 0.5), _run("c", 0.1, 0, 0.55, 0.5)]
    s = summarize(runs, "multilabel")
    assert [r["few_shot"] for r in s] == [1.0, 0.1]
    assert s[0]["auc"] == pytest.approx(0.7) and s[0]["auc_std"] == pytest.approx(0.1) and s[0]["runs"] == 2
    data = write_results(tmp_path, "T", "multilabel", runs, {"mode": "probe"}, notes=["no validation"])
    assert _strict((tmp_path / "metrics.json").read_text())["summary"] == data["summary"]
    md = (tmp_path / "results.md").read_text()
    assert ("| 100% | 2 | 0.6000 ± 0.1000 | 0.6000 ± 0.1000 | 0.5000 ± 0.0000 | 0.7000 ± 0.1000 | "
            "0.6000 ± 0.1000 |") in md
    assert "| smile | 0.7000 | 0.7000 | 0.5000 | 0.8000 |" in md and "- no validation" in md
    assert "AUC (label mean)" in md
    assert not list(tmp_path.glob(".*tmp*"))


def test_metrics_json_is_strict_and_reads_back(tmp_path):
    """An undefined metric (NaN: e.g. AUC with one class in the test set) is written as null, never as a bare
    NaN that strict JSON readers reject; runs read back (resume) with nulls still summarise and render."""
    runs = [_run("a", 1.0, 0, float("nan"), 0.7), _run("b", 1.0, 1, 0.6, 0.5)]
    runs[0]["test"]["per_label"]["smile"]["auc"] = float("nan")
    runs[0]["val"] = {"auc": float("inf")}
    write_results(tmp_path, "T", "multilabel", runs, {"mode": "probe"})
    data = _strict((tmp_path / "metrics.json").read_text())
    assert data["runs"][0]["test"]["auc"] is None and data["runs"][0]["val"]["auc"] is None
    assert data["runs"][0]["test"]["per_label"]["smile"]["auc"] is None
    assert data["summary"][0]["auc"] == pytest.approx(0.6)  # the mean over runs where it is defined
    again = write_results(tmp_path, "T", "multilabel", data["runs"], {"mode": "probe"})  # resumed runs
    assert again["summary"][0]["auc"] == pytest.approx(0.6)
    md = (tmp_path / "results.md").read_text()
    assert "| a | 1 | 0 | 100% (10) | epoch 3 | 0.7000 | 0.7000 | 0.5000 | n/a |" in md


def test_paper_values_beside_the_measured_ones(tmp_path):
    paper = {"table": "Table 2 (CelebV-HQ appearance, LP)", "source": "the paper",
             "rows": {"marlin_vit_base_ytf": [{"row": "MARLIN ViT-B", "metrics": {"auc": 0.75, "acc": 0.5}},
                                              {"row": "MARLIN ViT-B 10 %", "few_shot": 0.1,
                                               "metrics": {"auc": 0.5}}]}}
    cfg = {"encoder": {"model": "marlin_vit_base_ytf"}, "paper": paper}
    runs = [_run("a", 1.0, 0, 0.8, 0.7), _run("b", 1.0, 1, 0.6, 0.5), _run("c", 0.1, 0, 0.55, 0.5)]
    data = write_results(tmp_path, "T", "multilabel", runs, {"mode": "probe", "config": cfg})
    rows = _strict((tmp_path / "metrics.json").read_text())["paper"]["rows"]
    assert rows[0]["metrics"]["auc"] == {"paper": 0.75, "measured": pytest.approx(0.7), "std": pytest.approx(0.1),
                                         "difference": pytest.approx(-0.05)}
    assert rows[1]["few_shot"] == 0.1 and rows[1]["metrics"]["auc"]["measured"] == pytest.approx(0.55)
    md = (tmp_path / "results.md").read_text()
    assert "Paper: Table 2 (CelebV-HQ appearance, LP) (the paper):" in md
    assert "| MARLIN ViT-B | 100% | AUC | 0.7000 ± 0.1000 | 0.7500 | -0.0500 |" in md
    assert "| MARLIN ViT-B | 100% | Acc | 0.6000 ± 0.1000 | 0.5000 | +0.1000 |" in md
    assert "| MARLIN ViT-B 10 % | 10% | AUC | 0.5500 ± 0.0000 | 0.5000 | +0.0500 |" in md
    assert data["paper"]["model"] == "marlin_vit_base_ytf"
    # another encoder: said so, no wrong row
    small = {"encoder": {"model": "marlin_vit_small_ytf"}, "paper": paper}
    other = paper_comparison(small, summarize(runs, "multilabel"))
    assert other["rows"] == [] and "marlin_vit_small_ytf" in other["missing"]
    assert paper_comparison({"encoder": {"model": "x"}}, []) is None
    # a metric the run does not compute is shown as such
    cfg["paper"] = {"table": "T", "rows": {"marlin_vit_base_ytf": {"row": "R", "metrics": {"uar": 0.4}}}}
    write_results(tmp_path, "T", "multilabel", runs, {"mode": "probe", "config": cfg})
    assert "| R | 100% | UAR | not measured | 0.4000 |  |" in (tmp_path / "results.md").read_text()
    assert math.isnan(paper_comparison(cfg, summarize(runs, "multilabel"))["rows"][0]["metrics"]["uar"]["measured"])
