"""`marlin demo` end to end at a tiny budget (numbers and files, not prose), and its pieces: the shared window
rule, features through encode_clips, the items adapter's task datasets, the paired bootstrap, the ridge probe."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from marlin.cli import main
from marlin.synth import TASKS
from marlin.train import pretrain_config

TINY = {
    "model_name": "demo_test", "img_size": 32, "patch_size": 16, "clip_frames": 4, "tubelet_size": 2,
    "mask_strategy": "fasking", "temporal_sample_rate": 1, "mask_percentage_target": 0.75,
    "encoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}, "decoder": {"embed_dim": 8, "depth": 1, "num_heads": 2},
    "learning_rate": {"base": 0.03, "warmup": 1e-4, "min": 1e-3, "warmup_epochs": 1},
    "trainer": {"batch_size": 4, "num_workers": 0, "val_every": 2, "val_batches": 1, "warmup_steps": 1},
}
PROBES = ("logistic", "sgd", "ridge")


def _check_report(report: dict, encoders: set, n_test: int, iterations: int) -> None:
    """The numbers of a report: every encoder x task x probe has its metric in range, margins are the differences
    of the check's metrics, intervals are ordered and the verdict follows from them."""
    assert set(report["results"]) == encoders
    assert report["pretraining"]["iterations"] == iterations and report["splits"]["test"] == n_test
    assert report["splits"]["train"] == 24 and report["splits"]["val"] == 3  # 30 clips: 80 / 10 / 10 %
    assert report["metrics"] == {"appearance": "auc_label_mean", "action": "auc_label_mean", "expression": "acc",
                                 "manipulated": "auc"}
    for name in encoders:
        assert set(report["results"][name]) == set(TASKS)
        for task, metric in report["metrics"].items():
            for probe in PROBES:
                value = report["results"][name][task][probe]["test"][metric]
                assert value is None or 0.0 <= value <= 1.0  # None: an AUC undefined on a tiny test set
    for probe in PROBES:
        c = report["probes"][probe]
        assert set(c["margin_pretrained_minus_random"]) == set(c["margin_95ci_paired_bootstrap"]) == set(TASKS)
        for task, metric in report["metrics"].items():
            pre = report["results"]["fasking"][task][probe]["test"][metric]
            rnd = report["results"]["random init"][task][probe]["test"][metric]
            margin = c["margin_pretrained_minus_random"][task]
            if None not in (pre, rnd, margin):
                assert margin == pytest.approx(pre - rnd)
            lo, hi = c["margin_95ci_paired_bootstrap"][task]
            assert lo is None or lo <= hi
        clear = all(lo is not None and lo > 0 for lo, _ in c["margin_95ci_paired_bootstrap"].values())
        assert c["pretrained_beats_random_on_every_task"] == clear
    assert report["probes"]["logistic"]["margin_pretrained_minus_random"] == report["margin_pretrained_minus_random"]
    assert report["check_probe"] == "logistic"
    assert set(report["stage_seconds"]) == {"synthetic worlds", "pretraining", "features", "probes", "report"}
    assert sum(report["stage_seconds"].values()) <= report["seconds_total"]


def test_demo_end_to_end_tiny(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert pretrain_config(cfg).model.img_size == 32
    out = tmp_path / "demo"
    # the budget is iterations only (no wall-clock cap): a slow or loaded machine runs the same test
    args = ["demo", "--out", str(out), "--config", str(cfg), "--num", "30", "--frames", "8", "--size", "32",
            "--workers", "1", "--quiet", "--set", "minutes=null"]
    assert main([*args, "--max-steps", "3", "--test-num", "14", "--precision", "32"]) == 0
    report_dir = out / "report"
    report = json.loads((report_dir / "report.json").read_text())
    _check_report(report, {"random init", "fasking"}, 14, 3)
    assert report["pretraining"]["stopped_by"] == "max_steps" and report["settings"]["minutes"] is None
    assert report["pretraining"]["precision"] == "32-true"
    assert report["feature_precision"] == "32" and report["settings"]["test_items"] == 14
    for png in ("loss_curve.png", "reconstruction.png", "fasking_masks.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "data_test").glob("*/clip.mp4"))) == 14 and len(list((out / "data").glob("*/clip.mp4"))) == 30
    md = (report_dir / "report.md").read_text()  # the Markdown carries the report's numbers
    for task, (lo, hi) in report["margin_95ci_paired_bootstrap"].items():
        assert f"{task} {report['margin_pretrained_minus_random'][task]:+.3f} [{lo:+.3f}, {hi:+.3f}]" in md
    assert str(report_dir / "report.md") in capsys.readouterr().out
    # a second run reuses both worlds (resumable generation) and overwrites the report; --ablation adds the other
    # masking strategies; --strict turns a failed pretrained-vs-random check into exit status 1; --set reaches
    # any setting
    rc = main([*args, "--max-steps", "1", "--test-num", "0", "--strict", "--ablation", "--set", "feature_batch=7"])
    report = json.loads((report_dir / "report.json").read_text())
    _check_report(report, {"random init", "fasking", "tube", "random"}, 3, 1)  # the world's own test split
    assert rc == (0 if report["pretrained_beats_random_on_every_task"] else 1)
    assert report["settings"]["feature_batch"] == 7 and report["settings"]["ablation"] is True


def test_demo_settings_come_from_the_config_layer(capsys):
    """Flags are generated from DemoSettings (historic names kept); unknown keys and bad values are errors."""
    import argparse

    from marlin.cli import demo as cli
    from marlin.config import load, values_from_args
    from marlin.apps.demo import DemoSettings

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--out", "x", "--num", "5", "--test-num", "2", "--max-steps", "10", "--set", "minutes=null",
                              "--set", "feature_batch=4"])
    s = load(DemoSettings, None, args.set, values_from_args(args))
    assert (s.out_dir, s.num_items, s.test_items, s.max_steps, s.minutes, s.feature_batch) == \
        (Path("x"), 5, 2, 10, None, 4)
    assert DemoSettings().max_steps == 8500  # the budget is iterations: the same encoder however loaded the machine
    assert parser.parse_args(["--precision", "auto"]).__dict__["cfg:precision"] == "auto"  # marlin.precision names
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp16"])
    assert main(["demo", "--set", "num_itmes=5"]) == 2
    assert "did you mean 'num_items'" in capsys.readouterr().err
    assert main(["demo", "--set", "readout=sparse"]) == 2


def test_task_datasets_read_the_items_labels_and_take_the_first_test_items(tmp_path):
    from marlin.data import load_item
    from marlin.apps.worlds import task_datasets
    from marlin.synth import generate_dataset

    generate_dataset(tmp_path / "a", 10, frames=4, size=32, seed=0, progress=False)
    generate_dataset(tmp_path / "b", 8, frames=4, size=32, seed=1, progress=False)
    sets = task_datasets(tmp_path / "a", tmp_path / "b", test_items=5)
    assert set(sets) == set(TASKS)
    for task, ds in sets.items():
        assert ds.task.kind == TASKS[task][0] and ds.task.metric in ("acc", "auc", "auc_label_mean")
        assert [s.key for s in ds.splits["train"]] == [f"{n}/clip" for n in (tmp_path / "a" / "train.txt").read_text().split()]
        assert [s.key for s in ds.splits["test"]] == [f"synth_{k:06d}/clip" for k in range(5)]
        assert all(s.source.parent.parent == tmp_path / "b" for s in ds.splits["test"])
        for s in ds.splits["test"]:
            assert np.array_equal(np.asarray(s.target), np.asarray(load_item(s.source.parent).labels[task]))
    assert sets["expression"].task.labels == tuple(str(i) for i in range(7))  # every class, present or not


def test_demo_windows_are_the_shared_rule():
    from marlin.downstream.probes import windows
    from marlin.video.windows import clip_indices

    assert windows(32, 16, 1) == [list(range(16)), list(range(16, 32))]
    assert windows(40, 16, 1) == [list(range(16)), list(range(16, 32)), list(range(24, 40))]  # tail window
    assert windows(64, 16, 2) == [list(range(0, 32, 2)), list(range(32, 64, 2))]
    assert windows(10, 16, 2) == [list(range(10)) + [9] * 6]  # shorter than a window: padded
    for total in (5, 16, 31, 32, 33, 47, 48, 100):
        assert windows(total, 16, 1) == clip_indices(total, 16, 1, stride=16, cover_tail=True)


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    """Three 8-frame 32 px videos on disk and their decoded frames."""
    from marlin.video import read_frames, write_video

    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(3):
        paths.append(str(root / f"v{k}.mp4"))
        write_video(paths[-1], rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
    return paths, [read_frames(p) for p in paths]


def test_encode_videos_reads_every_window_and_pools_over_all_of_them(tmp_path, tiny_videos):
    import torch

    from marlin.downstream.probes import encode_videos, spatial_readout
    from marlin.extract import clips_to_tensor
    from marlin.models import Marlin

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = pretrain_config(tmp_path / "tiny.yaml").model
    torch.manual_seed(0)
    model = Marlin(cfg, full_model=False).eval()
    torch.manual_seed(1)
    other = Marlin(cfg, full_model=False).eval()
    paths, frames = tiny_videos
    feats = encode_videos({"a": model}, paths, 1, batch_size=3, progress=False)["a"]
    assert feats.shape == (3, 2 * 4 * 16)
    with torch.no_grad():  # video 1 by hand: the tokens of both windows, statistics over all 2 x 2 time slots
        tokens = model.extract_features(clips_to_tensor([frames[1][:4], frames[1][4:]]), keep_seq=True)
        t, h, w = cfg.grid
        want = spatial_readout(tokens.reshape(1, -1, tokens.shape[-1]), (2 * t, h, w))[0].numpy()
        per_window = model.extract_features(clips_to_tensor([frames[1][:4], frames[1][4:]]), keep_seq=False)
    np.testing.assert_allclose(feats[1], want, rtol=1e-5, atol=1e-5)
    # batching windows or videos differently changes nothing; several encoders in one pass give each its own
    both = encode_videos({"a": model, "b": other}, paths, 1, batch_size=16, chunk=2, progress=False)
    np.testing.assert_allclose(both["a"], feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both["b"], encode_videos({"b": other}, paths, 1, progress=False)["b"], rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(both["a"], both["b"])
    pooled = encode_videos({"a": model}, paths, 1, readout="pooled", progress=False)["a"]
    np.testing.assert_allclose(pooled[1], per_window.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    bf16 = encode_videos({"a": model}, paths, 1, precision="bf16", progress=False)["a"]
    cos = (bf16 * feats).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(feats, axis=1)
    assert bf16.dtype == np.float32 and cos.min() > 0.99 and not np.array_equal(bf16, feats)


def test_paired_bootstrap_metrics_match_compute_metrics_and_bracket_the_margin():
    from marlin.downstream.metrics import compute_metrics, paired_bootstrap, resampled_metric

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 6))
    s = np.round(y + rng.normal(0, 1.5, y.shape), 1)  # rounded: ties between clips count one half
    yc = rng.integers(0, 7, 200)
    sc = rng.normal(size=(200, 7))
    sc[np.arange(200), yc] += 1
    idx = rng.integers(0, 200, 200)
    counts = np.bincount(idx, minlength=200)[None].repeat(2, 0)
    for kind, metric, scores, targets in (("multilabel", "auc_label_mean", s, y), ("binary", "auc", s[:, 0], y[:, 0]),
                                          ("multiclass", "acc", sc, yc)):
        want = compute_metrics(kind, scores[idx], targets[idx])[metric]
        assert resampled_metric(kind, metric, scores, targets, counts) == pytest.approx([want, want], abs=1e-6)
    with pytest.raises(ValueError, match="no vectorised"):
        resampled_metric("multilabel", "auc", s, y, counts)
    # a clearly better predictor gets an interval above zero; the same predictor gets one at zero
    lo, hi = paired_bootstrap("multilabel", "auc_label_mean", s, y + rng.normal(0, 0.3, y.shape), y, n=300)
    assert 0 < lo < hi
    assert paired_bootstrap("multilabel", "auc_label_mean", s, s, y, n=50) == (0.0, 0.0)


def test_ridge_probe_recovers_a_linear_rule_and_not_noise():
    from marlin.downstream.probes import ridge_probe
    from marlin.downstream.metrics import compute_metrics
    from marlin.downstream.tasks import Task

    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 3))
    x = {s: rng.normal(size=(n, 50)) for s, n in (("train", 300), ("val", 100), ("test", 200))}
    y = {s: (v @ w).argmax(1) for s, v in x.items()}  # a 3-class linear rule
    task = Task("rule", "multiclass", ("0", "1", "2"))
    scores = ridge_probe(task, *[(x[s], y[s]) for s in ("train", "val", "test")])
    assert scores.shape == (200, 3) and compute_metrics("multiclass", scores, y["test"])["acc"] > 0.8
    noise = {s: rng.normal(size=(len(v), 50)) for s, v in x.items()}  # features unrelated to the labels
    scores = ridge_probe(task, *[(noise[s], y[s]) for s in ("train", "val", "test")])
    assert compute_metrics("multiclass", scores, y["test"])["acc"] < 0.5
    yb = {s: (v @ w[:, 0] > 0).astype(int) for s, v in x.items()}
    scores = ridge_probe(Task("sign", "binary"), *[(x[s], yb[s]) for s in ("train", "val", "test")])
    assert scores.shape == (200,) and compute_metrics("binary", scores, yb["test"])["auc"] > 0.95
