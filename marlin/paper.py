"""The paper's result tables (MARLIN, CVPR 2023, Tables 2-7) as data shipped with the package.

``marlin/data/paper_tables.json`` holds the numbers of the tables as the paper prints them (accuracy in %, AUC
in [0, 1], LSE-D / LSE-C / FID as is), copied from the paper's text, with each table's columns, the cells that
name a row (``key``), the percent columns and notes on cells the PDF extraction garbled. Run configs name a
cell by (table, row, column) in their ``paper`` entry (`marlin.downstream.report`), and docs/reproduce.md
quotes them; ``tests/test_paper_values.py`` checks the file against the paper's tables.

    >>> paper_value(2, "MARLIN (LP)", "appearance AUC")
    0.9373
    >>> paper_value(3, "emotion / MARLIN (YTF)", "acc", fraction=True)   # on the scale of measured metrics
    0.806
"""
from __future__ import annotations

import copy
import functools
import json
from importlib import resources

TABLES_FILE = "marlin/data/paper_tables.json"

__all__ = ["TABLES_FILE", "paper_tables", "paper_source", "table_id", "table_title", "row_names", "columns",
           "paper_value", "is_percent"]


@functools.cache
def _data() -> dict:
    return json.loads((resources.files("marlin") / "data" / "paper_tables.json").read_text(encoding="utf-8"))


def paper_tables() -> dict:
    """The whole file: {"source", "about", "tables": {"2": {title, key, percent, protocol, columns, rows, ...}}}."""
    return copy.deepcopy(_data())


def paper_source() -> str:
    """The citation every value carries: the paper's title, venue and arXiv id."""
    return _data()["source"]


def table_id(table) -> str:
    """The file's key of a table given as 2, "2" or "Table 2"."""
    key = str(table).strip()
    key = key[len("table"):].strip() if key.lower().startswith("table") else key
    if key not in _data()["tables"]:
        raise ValueError(f"{TABLES_FILE}: no table {table!r} (tables: {', '.join(_data()['tables'])})")
    return key


def _table(table) -> dict:
    return _data()["tables"][table_id(table)]


def table_title(table) -> str:
    """'Table 2 (CelebV-HQ facial attributes ...)'."""
    return f"Table {table_id(table)} ({_table(table)['title']})"


def _row_name(t: dict, row: list) -> str:
    return " / ".join(str(row[t["columns"].index(k)]) for k in t["key"])


def row_names(table) -> list[str]:
    """The names of a table's rows: its key cells joined with ' / ' (Table 3: 'emotion / MARLIN (YTF)')."""
    t = _table(table)
    return [_row_name(t, r) for r in t["rows"]]


def columns(table) -> list[str]:
    """The value columns of a table (the key columns left out)."""
    t = _table(table)
    return [c for c in t["columns"] if c not in t["key"]]


def paper_value(table, row: str, column: str, *, fraction: bool = False) -> float:
    """The paper's value in ``table`` at ``row`` (a name from `row_names` or one of the table's aliases) and
    ``column``; ``fraction=True`` turns a percentage into a fraction (the scale of the toolkit's metrics).
    Raises ValueError naming what is not there, or a cell the paper leaves empty."""
    t, key = _table(table), table_id(table)
    name = t.get("aliases", {}).get(row, row)
    names = [_row_name(t, r) for r in t["rows"]]
    if name not in names:
        raise ValueError(f"{TABLES_FILE}: Table {key} has no row {row!r} (rows: {'; '.join(names)})")
    if column not in columns(table):
        raise ValueError(f"{TABLES_FILE}: Table {key} has no column {column!r} (columns: {', '.join(columns(table))})")
    value = t["rows"][names.index(name)][t["columns"].index(column)]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{TABLES_FILE}: Table {key}, row {row!r}, column {column!r}: the paper gives no number "
                         f"({value!r})")
    return round(value / 100, 10) if fraction and column in t["percent"] else float(value)


def is_percent(table, column: str) -> bool:
    """Whether the paper prints ``column`` of ``table`` in %."""
    return column in _table(table)["percent"]
