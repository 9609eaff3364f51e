"""Results files of a run: ``metrics.json`` (every run + the mean over folds / seeds) and ``results.md``."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

# metric columns shown per task kind, in order
COLUMNS = {"multilabel": ("acc", "wacc", "f1", "auc"), "binary": ("acc", "auc", "macro_f1", "wacc"),
           "multiclass": ("war", "uar", "macro_f1", "auc")}
NAMES = {"acc": "Acc", "wacc": "Weighted acc", "f1": "F1", "auc": "AUC", "macro_f1": "Macro-F1",
         "war": "WAR", "uar": "UAR", "recall": "Recall"}


def write_text(path: Path, text: str) -> None:
    """Atomic text write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=1, default=_jsonable) + "\n")


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def summarize(runs: list[dict], kind: str) -> list[dict]:
    """Mean and standard deviation of each metric over runs with the same few-shot fraction."""
    out = []
    for frac in sorted({r["few_shot"] for r in runs}, reverse=True):
        group = [r for r in runs if r["few_shot"] == frac]
        row = {"few_shot": frac, "runs": len(group)}
        for m in COLUMNS[kind]:
            vals = [r["test"].get(m, float("nan")) for r in group]
            vals = [v for v in vals if not math.isnan(v)]
            row[m] = float(np.mean(vals)) if vals else float("nan")
            row[f"{m}_std"] = float(np.std(vals)) if len(vals) > 1 else 0.0
        out.append(row)
    return out


def _selected(run: dict) -> str:
    """What validation chose: the epoch (SGD probe, fine-tuning) or the L2 penalty (logistic probe)."""
    return f"L2 {run['penalty']:g}" if "penalty" in run else f"epoch {run.get('best_epoch')}"


def markdown(title: str, kind: str, runs: list[dict], summary: list[dict], notes: list[str] = ()) -> str:
    """A results table: one row per run, then the mean (± std) per few-shot fraction."""
    cols = COLUMNS[kind]
    head = "| run | fold | seed | train labels | selected | " + " | ".join(NAMES[c] for c in cols) + " |"
    lines = [f"# {title}", "", head, "|" + "---|" * (5 + len(cols))]
    for r in runs:
        vals = " | ".join(f"{r['test'].get(c, float('nan')):.4f}" for c in cols)
        lines.append(f"| {r['name']} | {r.get('fold', 1)} | {r['seed']} | {r['few_shot']:.0%} ({r['n_train']}) | "
                     f"{_selected(r)} | {vals} |")
    if summary:
        lines += ["", "Mean over folds and seeds (test set):", "",
                  "| train labels | runs | " + " | ".join(NAMES[c] for c in cols) + " |",
                  "|" + "---|" * (2 + len(cols))]
        for s in summary:
            vals = " | ".join(f"{s[c]:.4f} ± {s[c + '_std']:.4f}" for c in cols)
            lines.append(f"| {s['few_shot']:.0%} | {s['runs']} | {vals} |")
    per_label = next((r for r in runs if r["test"].get("per_label")), None)
    if per_label is not None:
        keys = list(next(iter(per_label["test"]["per_label"].values())))
        lines += ["", f"Per label / class, test set, run {per_label['name']}:", "",
                  "| label | " + " | ".join(NAMES.get(k, k.capitalize()) for k in keys) + " |",
                  "|" + "---|" * (1 + len(keys))]
        for name, vals in per_label["test"]["per_label"].items():
            lines.append(f"| {name} | " + " | ".join(f"{vals[k]:.4f}" for k in keys) + " |")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_results(out_dir: Path, title: str, kind: str, runs: list[dict], extra: dict, notes=()) -> dict:
    """Write metrics.json and results.md in ``out_dir``; returns the JSON data."""
    summary = summarize(runs, kind)
    data = {**extra, "runs": runs, "summary": summary}
    write_json(Path(out_dir) / "metrics.json", data)
    write_text(Path(out_dir) / "results.md", markdown(title, kind, runs, summary, notes))
    return data
