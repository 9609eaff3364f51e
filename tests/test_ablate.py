"""`marlin ablate` end to end at a tiny budget (files, table shape, resume) and its pieces (arms, readout pooling,
the paired bootstrap against a hand computation)."""
import json

import numpy as np
import pytest

from marlin.cli import main

TINY = {
    "model_name": "ablate_test", "img_size": 32, "patch_size": 16, "clip_frames": 4, "tubelet_size": 2,
    "mask_strategy": "fasking", "temporal_sample_rate": 1, "mask_percentage_target": 0.75, "adv_loss": False,
    "encoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}, "decoder": {"embed_dim": 8, "depth": 1, "num_heads": 2},
    "learning_rate": {"base": 0.03, "warmup": 1e-4, "min": 1e-3, "warmup_epochs": 1},
    "trainer": {"batch_size": 4, "num_workers": 0, "val_every": 1000, "val_batches": 1, "warmup_steps": 1,
                "ckpt_every": 2, "log_every": 1, "precision": "32-true"},
}
TASKS = ("appearance", "action", "expression", "manipulated")


def _run(tmp_path, *extra, out="out", jobs=1):
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    return main(["ablate", "ratio", "--out", str(tmp_path / out), "--config", str(cfg), "--steps", "4",
                 "--jobs", str(jobs),
                 "--seeds", "1", "--num-items", "30", "--test-items", "12", "--frames", "4", "--size", "32",
                 "--ratios", "[0.5, 0.75]", "--ratio-reference", "0.75", "--no-random-floor", "--readout-pool", "2",
                 "--bootstrap", "50", "--quiet", *extra])


def test_ablate_ratio_end_to_end_and_resume(tmp_path, monkeypatch):
    from marlin.train import callbacks

    out = tmp_path / "out"
    # interrupt the second arm (ratio 0.75) at iteration 3, after its checkpoint at iteration 2
    real = callbacks.RunControl.on_train_batch_end

    def stop(self, trainer, pl_module, *a):
        real(self, trainer, pl_module, *a)
        if "_r0.75_" in str(self.ckpt_path) and pl_module.iteration == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(callbacks.RunControl, "on_train_batch_end", stop)
    assert _run(tmp_path) != 0
    first = sorted((out / "runs").glob("*_r0.5_*/seed0/result.json"))
    assert len(first) == 1  # the first arm finished before the crash
    mtime = first[0].stat().st_mtime_ns
    second = next((out / "runs").glob("*_r0.75_*/seed0"))
    assert not (second / "result.json").exists() and (second / "pretrain/checkpoints/last.ckpt").is_file()

    monkeypatch.setattr(callbacks.RunControl, "on_train_batch_end", real)
    assert _run(tmp_path) == 0
    assert first[0].stat().st_mtime_ns == mtime  # the finished arm was not rerun
    rec = json.loads((second / "result.json").read_text())
    assert rec["pretraining"]["resumed"] and rec["pretraining"]["iterations"] == 4
    assert rec["what"]["mask_ratio"] == 0.75 and rec["what"]["trainer"]["seed"] == 0  # the record says what it is

    study = out / "ratio"
    for name in ("ablation.md", "ablation.json", "config.yaml", "ratio.png"):
        assert (study / name).is_file(), name
    data = json.loads((study / "ablation.json").read_text())
    assert data["reference"] == "0.75" and list(data["rows"]) == ["0.5", "0.75"] and data["complete"]
    for task in TASKS:
        row = data["rows"]["0.5"][task]
        assert row["values"] == [json.loads(first[0].read_text())["metrics"][task][row["metric"]]]
        lo, hi = row["delta"]["interval_pooled"]
        assert lo <= hi and [lo, hi] == row["delta"]["interval_per_seed"][0]  # one seed: pooling changes nothing
        assert "delta" not in data["rows"]["0.75"][task]
    table = [line for line in (study / "ablation.md").read_text().splitlines() if line.startswith("| ")]
    assert len(table) == 2 * (1 + 2)  # two tables (values, intervals): a header and one row per arm
    assert all(line.count("|") == 2 + len(TASKS) for line in table)

    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed0/result.json")}
    assert _run(tmp_path) == 0  # everything finished: nothing reruns
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # a run stopped after its pretraining was recorded: the pretrained encoder is reused, not trained again
    export = next((first[0].parent / "pretrain/export").glob("*.safetensors"))
    before = export.stat().st_mtime_ns
    first[0].unlink()
    assert _run(tmp_path) == 0 and first[0].is_file()
    assert export.stat().st_mtime_ns == before


def test_arms_in_parallel_processes_give_the_records_of_one_process(tmp_path, monkeypatch, capsys):
    """--jobs 2: the arms run in two worker processes of one thread each (this test's process runs one thread
    too), and every arm's record is the one the sequential run writes."""
    import os

    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # one thread per worker, as this process has
    assert _run(tmp_path, out="seq", jobs=1) == 0
    assert "arms at once" not in capsys.readouterr().out
    assert _run(tmp_path, out="par", jobs=2) == 0
    assert "2 arms at once, 1 thread(s) each" in capsys.readouterr().out
    for ratio in ("0.5", "0.75"):
        seq, par = (json.loads(next((tmp_path / o / "runs").glob(f"*_r{ratio}_*/seed0/result.json")).read_text())
                    for o in ("seq", "par"))
        assert par["pretraining"]["threads"] == 1
        assert par["metrics"] == seq["metrics"] and par["val"] == seq["val"]
        # to float32 rounding: in a process that ran other tests first the last digit can differ (seen after
        # tests/test_gpu_paths.py), while another seed or mask moves the loss in the third
        assert par["pretraining"]["final_rec_loss"] == pytest.approx(seq["pretraining"]["final_rec_loss"], rel=1e-6)
    assert (json.loads((tmp_path / "par/ratio/ablation.json").read_text())["rows"]
            == json.loads((tmp_path / "seq/ratio/ablation.json").read_text())["rows"])


def test_study_arms_and_errors():
    from marlin.apps.ablate import AblateSettings, study_arms
    from marlin.errors import MarlinError

    s = AblateSettings(studies=["modules", "masking"])
    arms, ref = study_arms("modules", s)
    assert ref == arms[0].name and [a.values for a in arms] == [
        {"mask_strategy": "tube", "adv_loss": False}, {"mask_strategy": "fasking", "adv_loss": False},
        {"mask_strategy": "tube", "adv_loss": True}, {"mask_strategy": "fasking", "adv_loss": True}]
    arms, ref = study_arms("masking", s)
    assert ref == "tube" and {a.values["mask_strategy"] for a in arms} == {"fasking", "fasking_opp", "random",
                                                                           "frame", "tube", "fasking_inner"}
    with pytest.raises(MarlinError, match="unknown study"):
        AblateSettings(studies=["nope"])


def test_shared_arms_have_one_folder(tmp_path):
    """The masking study (with AT, as Table 7's) shares its tube and fasking arms with the modules study's + AT and
    MARLIN arms: one run each."""
    from marlin.apps.ablate import AblateSettings, arm_config, arm_dir, study_arms

    s = AblateSettings(studies=["modules", "masking"])
    mods = {a.name: arm_dir(tmp_path, arm_config(s, a, 0), "d") for a in study_arms("modules", s)[0]}
    mask = {a.name: arm_dir(tmp_path, arm_config(s, a, 0), "d") for a in study_arms("masking", s)[0]}
    assert mods["+ AT"] == mask["tube"] and mods["MARLIN (Fasking + AT)"] == mask["fasking"]
    assert len(set(mods.values()) | set(mask.values())) == 8  # 4 + 6 arms, 2 shared
    assert all(a.values["adv_loss"] for a in study_arms("masking", s)[0])
    tube = next(a for a in study_arms("masking", s)[0] if a.name == "tube")
    assert arm_dir(tmp_path, arm_config(s, tube, 1), "d") == mask["tube"]  # seeds are folders inside


def test_pool_readout_averages_blocks_of_positions():
    from marlin.apps.ablate import pool_readout

    h = w = 3
    x = np.arange(2 * h * w * 1, dtype=np.float32).reshape(1, -1)  # (1, 2*3*3*1): [mean grid, std grid]
    y = pool_readout(x, (h, w), 2).reshape(2, 2, 2)
    grid = x.reshape(2, 3, 3)
    assert y[0, 0, 0] == grid[0, :2, :2].mean() and y[1, 1, 1] == grid[1, 2, 2]  # a partial block: its one position
    assert y[0, 0, 1] == grid[0, :2, 2].mean()


def test_paired_bootstrap_matches_a_hand_computation():
    """paired_bootstrap of accuracy: the same resamples drawn by hand give the same percentiles."""
    from marlin.downstream.metrics import paired_bootstrap

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 40)
    a, b = rng.random((40, 3)), rng.random((40, 3))
    b[:20, :] = np.eye(3)[y[:20]]  # b is right on half the clips
    lo, hi = paired_bootstrap("multiclass", "acc", a, b, y, n=200, seed=7)
    idx = np.random.default_rng(7).integers(0, 40, (200, 40))
    diffs = [(b[i].argmax(1) == y[i]).mean() - (a[i].argmax(1) == y[i]).mean() for i in idx]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_ablate_with_a_downstream_config_on_other_data(tmp_path):
    """--data DIR + --downstream CONFIG: each arm pretrains on DIR and is probed by `marlin probe`'s runs; the
    table has the config's task, with the difference to the reference and no interval."""
    import yaml

    from marlin.synth import generate_dataset

    world = tmp_path / "world"
    generate_dataset(world, 20, frames=4, size=32, seed=5, progress=False)
    probe = tmp_path / "probe.yaml"
    probe.write_text(yaml.safe_dump({"dataset": "items", "root": str(world), "task": "manipulated",
                                     "solver": "logistic", "windows": {"sample_rate": 1, "stride": 4}}))
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    assert main(["ablate", "ratio", "--out", str(out), "--config", str(cfg), "--steps", "2", "--seeds", "1",
                 "--data", str(world), "--downstream", f"[{probe}]", "--ratios", "[0.5, 0.75]",
                 "--ratio-reference", "0.75", "--no-random-floor", "--quiet"]) == 0
    data = json.loads((out / "ratio" / "ablation.json").read_text())
    row = data["rows"]["0.5"]["items/manipulated"]
    assert row["metric"] == "auc" and len(row["values"]) == 1 and row["delta"]["interval_pooled"] is None
    runs = sorted((out / "runs").glob("*/seed0/downstream/probe/results.md"))
    assert len(runs) == 2  # each arm probed with its own encoder


@pytest.mark.parametrize("kind,metric,width", [("binary", "auc", None), ("multilabel", "auc_label_mean", 3),
                                               ("multiclass", "acc", 4)])
def test_pooled_seeds_score_the_mean_of_the_per_seed_metrics(kind, metric, width):
    """The pooled problem's metric on the full sample is the mean over seeds of each seed's metric, so the
    interval of the difference is around the reported mean difference."""
    from marlin.apps.ablate import pooled
    from marlin.downstream.metrics import compute_metrics, resampled_metric

    rng = np.random.default_rng(0)
    n = 60
    y = (rng.integers(0, width, n) if kind == "multiclass" else
         rng.integers(0, 2, (n, width)) if width else rng.integers(0, 2, n))
    scores = [rng.random(y.shape if kind != "multiclass" else (n, width)) + 0.3 * k * (y if kind != "multiclass"
              else np.eye(width)[y]) for k in range(3)]
    k, m, s, t = pooled(kind, metric, scores, [y] * 3)
    whole = resampled_metric(k, m, s, t, np.ones((1, len(t))))[0]
    assert whole == pytest.approx(np.mean([compute_metrics(kind, v, y)[metric] for v in scores]))


def test_beside_the_paper_gives_table7_differences_and_verdicts(tmp_path):
    """Table 7's comparisons of the modules study: the paper's difference from the package's table, ours from
    the runs' test scores, and the verdict of our interval against the paper's direction."""
    from marlin.apps.ablate import PAPER_COMPARISONS, beside_paper, paper_markdown, verdict
    from marlin.downstream.metrics import compute_metrics
    from marlin.paper import paper_value

    assert verdict(+0.2, (0.01, 0.05)) == "agree" and verdict(-0.2, (-0.05, -0.01)) == "agree"
    assert verdict(+0.2, (-0.05, -0.01)) == "disagree" and verdict(+0.2, (-0.01, 0.05)) == "unresolved"
    assert verdict(0.0, (-0.01, 0.05)) == "agree" and verdict(0.0, (0.01, 0.05)) == "disagree"

    rng = np.random.default_rng(0)
    n = 300
    y_expr, y_man = rng.integers(0, 7, n), rng.integers(0, 2, n)
    tasks = {"expression": ("multiclass", "acc"), "manipulated": ("binary", "auc")}

    def run(name, signal):
        folder = tmp_path / name
        folder.mkdir()
        expr = rng.normal(size=(n, 7))
        expr[np.arange(n), y_expr] += signal
        man = rng.normal(size=n) + signal * y_man
        np.savez(folder / "scores.npz", expression__scores=expr, expression__targets=y_expr,
                 manipulated__scores=man, manipulated__targets=y_man)
        metrics = {"expression": {"acc": float((expr.argmax(1) == y_expr).mean())},
                   "manipulated": {"auc": compute_metrics("binary", man, y_man)["auc"]}}
        return {0: ({"metrics": metrics, "tasks": tasks}, folder)}

    # VideoMAE weak, + Fasking strong, + AT as weak as VideoMAE; MARLIN not run yet
    runs = {"VideoMAE (tube, no AT)": run("vmae", 0.2), "+ Fasking": run("fask", 3.0), "+ AT": run("at", 0.2)}
    rows = beside_paper("modules", runs, tasks, 200)
    assert len(rows) == 2 * len(PAPER_COMPARISONS["modules"])
    fasking = {r["task"]: r for r in rows if r["arm"] == "+ Fasking"}
    paper = paper_value(7, "modules / + Fasking", "emotion") - paper_value(7, "modules / VideoMAE (tube masking, "
                                                                           "no AT)", "emotion")
    assert fasking["expression"]["paper_column"] == "emotion"
    assert fasking["expression"]["paper_delta"] == round(paper, 6)
    assert paper > 0 and fasking["expression"]["interval"][0] > 0 and fasking["expression"]["verdict"] == "agree"
    at = {r["task"]: r for r in rows if r["arm"] == "+ AT"}
    assert at["manipulated"]["paper_delta"] > 0 and at["manipulated"]["verdict"] == "unresolved"  # same signal
    assert all(r["verdict"] == "not run" and r["ours"] is None for r in rows if r["arm"].startswith("MARLIN"))
    text = "\n".join(paper_markdown(rows))
    assert "| + Fasking − VideoMAE (tube, no AT) | emotion | +0.16 | expression |" in text
