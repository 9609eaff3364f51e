"""The paper's values: the tables the package ships (marlin/data/paper_tables.json) equal the paper's tables
(../shared/paper/tables.md, parsed here), every `paper:` reference of a shipped downstream config resolves to a
value there for a metric its task computes, every MARLIN row of Tables 2-4 and 6 is named by a shipped config,
and results.md shows the paper's value beside the measured one."""
import re
import tomllib
from fnmatch import fnmatch

import pytest

from marlin.cli import main
from marlin.config import ConfigError
from marlin.downstream.config import load_run_config, shipped_configs
from marlin.downstream.report import COLUMNS, write_results
from marlin.paper import paper_source, paper_tables, paper_value, row_names

from conftest import PAPER, ROOT

TABLES_MD = PAPER / "tables.md"
# the task kind of each (dataset, task) a shipped config names (marlin/downstream/datasets)
KINDS = {("celebvhq", "appearance"): "multilabel", ("celebvhq", "action"): "multilabel",
         ("mosei", "emotion"): "multilabel", ("mosei", "sentiment7"): "multiclass",
         ("mosei", "sentiment2"): "binary", ("ffpp", "real_fake"): "binary"}


def _cell(text: str):
    text = text.strip()
    if text in ("–", "-", "—"):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def parse_tables_md(text: str) -> dict:
    """{"2": (columns, rows)} from the markdown tables of tables.md; Table 4's note rows (accuracy or AUC only)
    as rows with the other cell empty."""
    out = {}
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        m = re.match(r"Table (\d) — ", section)
        if not m:
            continue
        lines = [ln for ln in section.splitlines() if ln.startswith("|")]
        columns = [c.strip() for c in lines[0].strip("|").split("|")]
        rows = [[_cell(c) for c in ln.strip("|").split("|")] for ln in lines[2:]]
        note = re.search(r"\(Other supervised rows: (.*?) acc; (.*?) AUC\.\)", section, re.S)
        if note:
            for part, at in ((note.group(1), 1), (note.group(2), 2)):
                for name, value in re.findall(r"\s*(.+?) (\d+\.\d+)(?:,|$)", part.replace("\n", " ")):
                    row = [f"{name} (supervised)", None, None]
                    row[at] = float(value)
                    rows.append(row)
        out[m.group(1)] = (columns, rows)
    return out


def _entries(cfg):
    """(model, entry) for every entry of a config's paper.rows."""
    for model, entries in (cfg.paper or {}).get("rows", {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            yield model, entry


def test_shipped_tables_equal_the_papers_tables():
    expected = parse_tables_md(TABLES_MD.read_text())
    shipped = paper_tables()["tables"]
    assert sorted(expected) == sorted(shipped) == ["2", "3", "4", "5", "6", "7"]
    for key, (columns, rows) in expected.items():
        assert shipped[key]["columns"] == columns, key
        assert shipped[key]["rows"] == rows, key  # every number, in order; '–' as null
        assert set(shipped[key]["percent"]) <= set(columns) and set(shipped[key]["key"]) <= set(columns)
        assert len(set(row_names(key))) == len(rows), f"Table {key}: two rows with one name"
    assert len(parse_tables_md(TABLES_MD.read_text())["4"][1]) == 15  # the note's 9 rows were read
    assert "CVPR 2023" in paper_source() and "MARLIN" in paper_source()


def test_paper_value_lookup_and_errors():
    assert paper_value(2, "MARLIN (LP)", "appearance AUC") == 0.9373
    assert paper_value("Table 2", "MARLIN (FT)", "appearance acc") == 93.90
    assert paper_value(3, "sentiment 2-class / MARLIN (YTF)", "acc", fraction=True) == pytest.approx(0.7370)
    assert paper_value(7, "encoder / ViT-L", "FF++ AUC", fraction=True) == 0.9377  # AUC: no scaling
    assert paper_value(6, "smallest", "FF++ AUC") == 0.6252  # the row whose label the extraction lost
    assert paper_value(5, "Wav2Lip + ViT + MARLIN", "LSE-D ↓") == 7.127
    with pytest.raises(ValueError, match=r"Table 2 has no row 'MARLIN' \(rows: .*MARLIN \(LP\)"):
        paper_value(2, "MARLIN", "appearance acc")
    with pytest.raises(ValueError, match="Table 2 has no column 'acc'"):
        paper_value(2, "MARLIN (LP)", "acc")
    with pytest.raises(ValueError, match="gives no number"):
        paper_value(4, "M2TR (supervised)", "acc")
    with pytest.raises(ValueError, match="no table '8'"):
        paper_value("8", "x", "y")


@pytest.mark.parametrize("name", [n for n in shipped_configs() if load_run_config(n).paper])
def test_every_paper_reference_resolves_to_a_measured_metric(name):
    cfg = load_run_config(name)
    kind = KINDS[(cfg.dataset, cfg.task)]
    for model, entry in _entries(cfg):
        assert model in ("marlin_vit_small_ytf", "marlin_vit_base_ytf", "marlin_vit_large_ytf"), model
        assert "table" in entry, f"{name}: {model}: values typed in, not cells of the shipped tables"
        for metric, column in entry["metrics"].items():
            assert metric in COLUMNS[kind], f"{name}: {metric} is not a metric of a {kind} task"
            assert isinstance(paper_value(entry["table"], entry["row"], column), float)
        assert entry.get("few_shot", 1.0) in cfg.few_shot or entry["table"] == 6, (name, entry)


def test_every_marlin_row_of_the_downstream_tables_is_named():
    """The MARLIN (ViT-B) cells of Tables 2, 3, 4 and 6 and the ViT-S / ViT-L cells of Table 7's encoder study,
    each named by a shipped config (Table 2's 'overall acc' is the mean of two configs' runs: no config)."""
    named = {(str(e["table"]), paper_value(e["table"], e["row"], c) and e["row"], c)
             for n in shipped_configs() for _, e in _entries(load_run_config(n)) for c in e["metrics"].values()}
    tables = paper_tables()["tables"]
    want = {("2", r, c) for r in ("MARLIN (LP)", "MARLIN (FT)") for c in tables["2"]["columns"][1:5]}
    want |= {("3", f"{t} / MARLIN (YTF)", "acc") for t in ("emotion", "sentiment 7-class", "sentiment 2-class")}
    want |= {("4", "MARLIN (YTF)", "acc"), ("4", "MARLIN (YTF)", "AUC")}
    want |= {("6", r, c) for r in ("50 %", "10 %", "smallest") for c in tables["6"]["columns"][1:]}
    want |= {("7", f"encoder / {s}", c) for s in ("ViT-S", "ViT-L") for c in tables["7"]["columns"][2:]}
    assert want - named == set()


def test_shipped_package_data_has_the_tables():
    """The wheel ships the file (pyproject package-data), not only this checkout."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["marlin"]
    assert any(fnmatch("data/paper_tables.json", pattern) for pattern in data)


def test_results_md_shows_the_paper_value_beside_the_measured_one(tmp_path):
    cfg = load_run_config("celebvhq_appearance_lp", values={"few_shot": [1.0, 0.1]})
    test = {"acc": 0.9, "wacc": 0.8, "f1": 0.5, "auc": 0.9, "auc_label_mean": 0.85}
    runs = [{"name": f"r{f}", "fold": 1, "seed": 0, "few_shot": f, "n_train": 10, "best_epoch": 1, "test": test}
            for f in (1.0, 0.1)]
    data = write_results(tmp_path, "T", "multilabel", runs, {"config": cfg.to_dict()})
    md = (tmp_path / "results.md").read_text()
    assert "| Table 2: MARLIN (LP) | 100% | Acc | 0.9000 ± 0.0000 | 0.9190 (91.90 %) | -0.0190 |" in md
    assert "| Table 2: MARLIN (LP) | 100% | AUC | 0.9000 ± 0.0000 | 0.9373 | -0.0373 |" in md
    assert "| Table 6: 10 % | 10% | AUC | 0.9000 ± 0.0000 | 0.8996 | +0.0004 |" in md
    assert "did not train on" in md and "Table 6: 50 % (50%): AUC 0.9273" in md  # fractions not run: a note
    assert "Table 2 (CelebV-HQ facial attributes" in md and paper_source() in md
    cell = data["paper"]["rows"][0]["metrics"]["acc"]["cell"]
    assert cell == {"table": "2", "row": "MARLIN (LP)", "column": "appearance acc", "printed": 91.9, "percent": True}
    # the ViT-L run of a MOSEI config: Table 7's encoder study
    large = load_run_config("mosei_sentiment7_lp", values={"encoder.model": "marlin_vit_large_ytf"})
    runs = [{**runs[0], "test": {"war": 0.3, "uar": 0.2, "macro_f1": 0.2, "auc": 0.6}}]
    write_results(tmp_path, "T", "multiclass", runs, {"config": large.to_dict()})
    assert ("| Table 7: encoder / ViT-L | 100% | WAR | 0.3000 ± 0.0000 | 0.3528 (35.28 %) | -0.0528 |"
            in (tmp_path / "results.md").read_text())


def test_a_reference_the_tables_lack_is_refused_when_the_config_loads(tmp_path, capsys):
    bad = {"rows": {"marlin_vit_base_ytf": {"table": 2, "row": "MARLIN (LP)", "metrics": {"acc": "acc"}}}}
    with pytest.raises(ConfigError, match=r"paper\.rows\.marlin_vit_base_ytf: .*Table 2 has no column 'acc'"):
        load_run_config("celebvhq_appearance_lp", values={"paper": bad})
    with pytest.raises(ConfigError, match="expected the paper's value"):
        load_run_config("celebvhq_appearance_lp", values={"paper": {"rows": {"m": {"metrics": {"acc": "x"}}}}})
    with pytest.raises(ConfigError, match="unknown key"):
        load_run_config("celebvhq_appearance_lp", values={"paper": {"rows": {"m": {"tabel": 2, "metrics": {}}}}})
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("dataset: csv\nroot: nowhere\npaper: {rows: {marlin_vit_base_ytf: "
                   "{table: 3, row: emotion / MARLIN, metrics: {acc: acc}}}}\n")
    assert main(["probe", str(cfg), "--weights", "random", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("marlin probe: error: ") and str(cfg) in err[0]
    assert "Table 3 has no row 'emotion / MARLIN'" in err[0]
    assert not (tmp_path / "out").exists()  # refused before any work
