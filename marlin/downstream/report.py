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

__all__ = ["COLUMNS", "NAMES", "fmt_metric", "summarize", "markdown", "check_paper", "paper_comparison",
           "write_results", "write_json", "write_text"]


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


PAPER_KEYS = ("table", "source", "rows")
ENTRY_KEYS = ("table", "row", "metrics", "few_shot")


def _resolve_entry(entry, where: str) -> dict:
    """One entry of ``paper.rows``, checked, with its values resolved: {"row", "few_shot", "table",
    "metrics": {metric: value on the measured scale}, "cells": {metric: cell}}. An entry with a ``table``
    names cells of the tables the package ships (`marlin.paper`): ``metrics: {metric: column}``; one without
    gives the values themselves: ``metrics: {metric: number}``."""
    from .. import paper as P
    from .fewshot import parse_fraction

    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping {{table, row, metrics, few_shot}}, got {entry!r}")
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(ENTRY_KEYS)})")
    metrics = entry.get("metrics")
    if not isinstance(metrics, dict) or not metrics:
        raise ValueError(f"{where}: 'metrics' must map metric names to the paper's values or columns, "
                         f"got {metrics!r}")
    row = str(entry.get("row", ""))
    out = {"row": row, "few_shot": parse_fraction(entry.get("few_shot", 1.0)), "table": None, "metrics": {},
           "cells": {}}
    if entry.get("table") is None:
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{where}: metrics.{name}: expected the paper's value (a number) or, with "
                                 f"'table', a column of that table; got {value!r}")
            out["metrics"][name] = float(value)
        return out
    try:
        table = P.table_id(entry["table"])
        for name, column in metrics.items():
            value = P.paper_value(table, row, str(column))
            out["metrics"][name] = P.paper_value(table, row, str(column), fraction=True)
            out["cells"][name] = {"table": table, "row": row, "column": str(column), "printed": value,
                                  "percent": P.is_percent(table, str(column))}
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    out["table"] = table
    return out


def check_paper(paper, where: str = "paper") -> None:
    """Raise ValueError when a config's ``paper`` entry is malformed or names a cell the shipped tables do not
    have (checked when the config loads, before any work)."""
    if paper is None:
        return
    if not isinstance(paper, dict):
        raise ValueError(f"{where}: expected a mapping {{table, source, rows}}, got {paper!r}")
    unknown = sorted(set(paper) - set(PAPER_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(PAPER_KEYS)})")
    rows = paper.get("rows") or {}
    if not isinstance(rows, dict):
        raise ValueError(f"{where}.rows: expected a mapping {{<encoder model>: entry or list of entries}}")
    for model, entries in rows.items():
        for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
            _resolve_entry(entry, f"{where}.rows.{model}" + (f"[{i}]" if isinstance(entries, list) else ""))


def paper_comparison(cfg: dict, summary: list[dict]) -> dict | None:
    """The paper's values beside the measured means, for the config's ``paper`` entry and encoder model.

    ``paper``: {"table": title, "source": citation, "rows": {<encoder model>: entry or a list of entries (one
    per few-shot fraction)}}; an entry is {"table": 2, "row": "MARLIN (LP)", "metrics": {"acc": "appearance
    acc"}, "few_shot": 1.0} (a cell of the shipped tables, `marlin.paper`; ``table``/``source`` then default to
    the tables' titles and the paper's citation) or {"row": name, "metrics": {metric: value}} (values given).
    Returns None when the config names no paper values; else {"table", "source", "model", "rows": [...]}, each
    row {"row", "few_shot", "measured" (whether the run has that fraction), "metrics": {metric: {"paper",
    "measured", "std", "difference"[, "cell"]}}}, or "missing" (a note) when the config has no row for this
    model."""
    from .. import paper as P

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
    resolved = [_resolve_entry(e, f"paper.rows.{model}") for e in (entries if isinstance(entries, list) else [entries])]
    tables = list(dict.fromkeys(e["table"] for e in resolved if e["table"] is not None))
    if tables:  # cells of the shipped tables: name them and the paper unless the config says otherwise
        out["table"] = out["table"] or "; ".join(P.table_title(t) for t in tables)
        out["source"] = out["source"] or P.paper_source()
    for entry in resolved:
        measured = by_frac.get(entry["few_shot"], {})
        metrics = {}
        for name, ref in entry["metrics"].items():
            got = _num(measured.get(name))
            metrics[name] = {"paper": ref, "measured": got, "std": _num(measured.get(f"{name}_std")),
                             "difference": got - ref, **({"cell": entry["cells"][name]} if name in entry["cells"]
                                                          else {})}
        label = f"Table {entry['table']}: {entry['row']}" if entry["table"] else entry["row"]
        out["rows"].append({"row": label, "few_shot": entry["few_shot"], "measured": bool(measured),
                            "metrics": metrics})
    return out


def _selected(run: dict) -> str:
    """What validation chose: the epoch (SGD probe, fine-tuning) or the L2 penalty (logistic probe)."""
    return f"L2 {run['penalty']:g}" if "penalty" in run else f"epoch {run.get('best_epoch')}"


def _paper_value(v: dict) -> str:
    """The paper's value on the measured scale, and as the paper prints it when that differs (a percentage)."""
    cell = v.get("cell")
    return fmt_metric(v["paper"]) + (f" ({cell['printed']:.2f} %)" if cell and cell["percent"] else "")


def _paper_lines(paper: dict) -> list[str]:
    lines = ["", f"Paper: {paper['table']}" + (f" ({paper['source']})" if paper["source"] else "") + ":", ""]
    if "missing" in paper:
        return lines + [f"- no paper value: {paper['missing']}"]
    lines += ["| paper row | train labels | metric | measured (mean ± std) | paper | difference |",
              "|---|---|---|---|---|---|"]
    for row in paper["rows"]:
        if not row.get("measured", True):
            continue
        for name, v in row["metrics"].items():
            measured = "not measured" if math.isnan(v["measured"]) else f"{v['measured']:.4f} ± {v['std']:.4f}"
            diff = "" if math.isnan(v["difference"]) else f"{v['difference']:+.4f}"
            lines.append(f"| {row['row']} | {row['few_shot']:.0%} | {NAMES.get(name, name)} | {measured} | "
                         f"{_paper_value(v)} | {diff} |")
    unrun = [r for r in paper["rows"] if not r.get("measured", True)]
    if unrun:
        lines += ["", "- paper rows at shares of the training labels this run did not train on (`--few-shot`): "
                  + "; ".join(f"{r['row']} ({r['few_shot']:.0%}): " + ", ".join(
                      f"{NAMES.get(n, n)} {_paper_value(v)}" for n, v in r["metrics"].items()) for r in unrun)]
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
