"""The CSV loss history of a run (rank 0 writes; resuming drops rows after the resumed iteration)."""
from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("kind", "iteration", "lr", "rec_loss", "adv_loss", "g_loss", "d_loss", "d_fake", "d_real", "gp",
           "mask_fallback", "clips_per_s", "seconds")


class History:
    """Append-only CSV with fixed columns; `rows()` reads it back as dicts of floats."""

    def __init__(self, path, resume_from: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_from is None or not self.path.exists():
            self._write_rows([])
        else:  # keep the trajectory up to the resumed iteration
            self._write_rows([r for r in self.rows() if r["iteration"] <= resume_from])

    def _write_rows(self, rows: list[dict]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, COLUMNS)
            w.writeheader()
            for r in rows:
                w.writerow({k: _fmt(r.get(k)) for k in COLUMNS})
        tmp.replace(self.path)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: _fmt(row.get(k)) for k in COLUMNS})

    def rows(self) -> list[dict]:
        return read_history(self.path)


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.8g}"
    return v


def read_history(path) -> list[dict]:
    """Rows of a history CSV: kind as str, iteration as int, other filled cells as float."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {"kind": r["kind"], "iteration": int(r["iteration"])}
            row.update({k: float(v) for k, v in r.items() if k not in ("kind", "iteration") and v not in ("", None)})
            out.append(row)
    return out
