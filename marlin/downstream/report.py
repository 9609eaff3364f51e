"""Results files of a run: ``metrics.json`` (every run + the mean over folds / seeds, strict JSON) and
``results.md`` (with the paper's values beside the measured ones when the config names its table row)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..atomic import write_json, write_text

# metric columns shown per task kind, in order
COLUMNS = {"multilabel": ("acc", "wacc", "f1", "auc", "auc_label_mean"), "binary": ("acc", "auc", "macro_f1", "wacc"),
           "multiclass": ("war", "uar", "macro_f1", "auc")}
NAMES = {"acc": "Acc", "wacc": "Weighted acc", "f1": "F1", "auc": "AUC", "auc_label_mean": "AUC (label mean)",
         "macro_f1": "Macro-F1", "war": "WAR", "uar": "UAR", "recall": "Recall"}

__all__ = ["COLUMNS", "NAMES", "fmt_metric", "summarize", "markdown", "paper_comparison", "write_results", "write_json",
           "write_text"]


def _num(value) -> float:
    """A metric value as a float; None (a non-finite value read back from strict JSON) and absent are NaN."""
    return float("nan") if value is None else float(value)


def fmt_metric(value) -> str:
    v = _num(value)
    return "n/a" if math.isnan(v) else f"{v:.4f}"


def summarize(runs: list[dict], kind: str) -> list[dict]:
    """Mean and standard deviation of each metric over runs with the same few-shot fraction."""
    out = []
    for frac in sorted({r["few_shot"] for r in runs}, reverse=True):
        group = [r for r in runs if r["few_shot"] == frac]
        row = {"few_shot": frac, "runs": len(group)}
        for m in COLUMNS[kind]:
            vals = [_num(r["test"].get(m)) for r in group]
            vals = [v for v in vals if not math.isnan(v)]
            row[m] = float(np.mean(vals)) if vals else float("nan")
            row[f"{m}_std"] = float(np.std(vals)) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def _model_key(model) -> str:
    """The name a config's ``paper.rows`` uses for an encoder: a preset name, or a YAML's file stem."""
    return "" if model is None else Path(str(model)).stem if str(model).endswith((".yaml", ".yml")) else str(model)


def paper_comparison(cfg: dict, summary: list[dict]) -> dict | None:
    """The paper's values beside the measured means, for the config's ``paper`` entry and encoder model.

    ``paper``: {"table": "Table 2 ...", "source": "...", "rows": {<encoder model>: {"row": name,
    "metrics": {metric: value}, "few_shot": 1.0} or a list of such (one per few-shot fraction)}}.
    Returns None when the config names no paper values; else {"table", "source", "model", "rows": [...]},
    each row {"row", "few_shot", "metrics": {metric: {"paper", "measured", "std", "difference"}}}, or
    "missing" (a note) when the config has no row for this model."""
    paper = (cfg or {}).get("paper")
    if not paper:
        return None
    model = _model_key((cfg.get("encoder") or {}).get("model"))
    out = {"table": paper.get("table", ""), "source": paper.get("source", ""), "model": model, "rows": []}
    entries = (paper.get("rows") or {}).get(model)
    if entries is None:
        out["missing"] = (f"the config names paper values for {sorted(paper.get('rows') or {})}, "
                          f"none for the encoder {model or '(from the weights file)'}")
        return out
    by_frac = {s["few_shot"]: s for s in summary}
    for entry in entries if isinstance(entries, list) else [entries]:
        frac = float(entry.get("few_shot", 1.0))
        measured = by_frac.get(frac, {})
        metrics = {}
        for name, value in (entry.get("metrics") or {}).items():
            got = _num(measured.get(name))
            ref = _num(value)
            metrics[name] = {"paper": ref, "measured": got, "std": _num(measured.get(f"{name}_std")),
                             "difference": got - ref}
        out["rows"].append({"row": entry.get("row", ""), "few_shot": frac, "metrics": metrics})
    return out


def _selected(run: dict) -> str:
    """What validation chose: the epoch (SGD probe, fine-tuning) or the L2 penalty (logistic probe)."""
    return f"L2 {run['penalty']:g}" if "penalty" in run else f"epoch {run.get('best_epoch')}"


def _paper_lines(paper: dict) -> list[str]:
    lines = ["", f"Paper: {paper['table']}" + (f" ({paper['source']})" if paper["source"] else "") + ":", ""]
    if "missing" in paper:
        return lines + [f"- no paper value: {paper['missing']}"]
    lines += ["| paper row | train labels | metric | measured (mean ± std) | paper | difference |",
              "|---|---|---|---|---|---|"]
    for row in paper["rows"]:
        for name, v in row["metrics"].items():
            measured = "not measured" if math.isnan(v["measured"]) else f"{v['measured']:.4f} ± {v['std']:.4f}"
            diff = "" if math.isnan(v["difference"]) else f"{v['difference']:+.4f}"
            lines.append(f"| {row['row']} | {row['few_shot']:.0%} | {NAMES.get(name, name)} | {measured} | "
                         f"{fmt_metric(v['paper'])} | {diff} |")
    return lines


def markdown(title: str, kind: str, runs: list[dict], summary: list[dict], notes: list[str] = (),
             paper: dict | None = None) -> str:
    """A results table: one row per run, then the mean (± std) per few-shot fraction, the paper's values when
    known, and the per-label / per-class values of the first run."""
    cols = COLUMNS[kind]
    head = "| run | fold | seed | train labels | selected | " + " | ".join(NAMES[c] for c in cols) + " |"
    lines = [f"# {title}", "", head, "|" + "---|" * (5 + len(cols))]
    for r in runs:
        vals = " | ".join(fmt_metric(r["test"].get(c)) for c in cols)
        lines.append(f"| {r['name']} | {r.get('fold', 1)} | {r['seed']} | {r['few_shot']:.0%} ({r['n_train']}) | "
                     f"{_selected(r)} | {vals} |")
    if summary:
        lines += ["", "Mean over folds and seeds (test set):", "",
                  "| train labels | runs | " + " | ".join(NAMES[c] for c in cols) + " |",
                  "|" + "---|" * (2 + len(cols))]
        for s in summary:
            vals = " | ".join(f"{fmt_metric(s[c])} ± {s[c + '_std']:.4f}" for c in cols)
            lines.append(f"| {s['few_shot']:.0%} | {s['runs']} | {vals} |")
    if paper is not None:
        lines += _paper_lines(paper)
    per_label = next((r for r in runs if r["test"].get("per_label")), None)
    if per_label is not None:
        keys = list(next(iter(per_label["test"]["per_label"].values())))
        lines += ["", f"Per label / class, test set, run {per_label['name']}:", "",
                  "| label | " + " | ".join(NAMES.get(k, k.capitalize()) for k in keys) + " |",
                  "|" + "---|" * (1 + len(keys))]
        for name, vals in per_label["test"]["per_label"].items():
            lines.append(f"| {name} | " + " | ".join(fmt_metric(vals.get(k)) for k in keys) + " |")
    if kind == "multilabel":
        notes = [*notes, "AUC: one ROC AUC over all (video, label) pairs, as the official MARLIN evaluation; "
                         "AUC (label mean): the mean of the per-label AUCs"]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, title: str, kind: str, runs: list[dict], extra: dict, notes=()) -> dict:
    """Write metrics.json (strict JSON: non-finite values as null) and results.md in ``out_dir``; returns the
    data. ``extra["config"]``'s ``paper`` entry, when set, puts the paper's values beside the measured ones."""
    summary = summarize(runs, kind)
    paper = paper_comparison(extra.get("config"), summary)
    data = {**extra, "runs": runs, "summary": summary, **({"paper": paper} if paper is not None else {})}
    write_json(Path(out_dir) / "metrics.json", data)
    write_text(Path(out_dir) / "results.md", markdown(title, kind, runs, summary, notes, paper))
    return data
