"""`marlin demo` end to end at a tiny budget: synthetic world -> pretraining -> probes -> report files."""
import json

import yaml

from marlin.cli import main
from marlin.train import pretrain_config

TINY = {
    "model_name": "demo_test", "img_size": 32, "patch_size": 16, "clip_frames": 4, "tubelet_size": 2,
    "mask_strategy": "fasking", "temporal_sample_rate": 2, "mask_percentage_target": 0.75,
    "encoder": {"embed_dim": 16, "depth": 1, "num_heads": 2}, "decoder": {"embed_dim": 8, "depth": 1, "num_heads": 2},
    "learning_rate": {"base": 0.03, "warmup": 1e-4, "min": 1e-3, "warmup_epochs": 1},
    "trainer": {"batch_size": 4, "num_workers": 0, "val_every": 2, "val_batches": 1, "warmup_steps": 1},
}


def test_demo_end_to_end_tiny(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert pretrain_config(cfg).model.img_size == 32
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--config", str(cfg), "--num", "30", "--frames", "8", "--size", "32",
               "--max-steps", "3", "--minutes", "1", "--workers", "1", "--test-num", "14", "--quiet"])
    assert rc == 0
    report_dir = out / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert report["pretraining"]["iterations"] == 3 and report["pretraining"]["stopped_by"] == "max_steps"
    assert set(report["results"]) == {"random init", "fasking"}
    for name in ("random init", "fasking"):
        assert set(report["results"][name]) == {"appearance", "action", "expression", "manipulated"}
        assert 0.0 <= report["results"][name]["expression"]["test"]["acc"] <= 1.0
    for png in ("loss_curve.png", "reconstruction.png", "fasking_masks.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report_dir / "report.md").read_text()
    assert "| appearance | test auc |" in md and "Pretrained beats random by a clear margin" in md
    assert "scored on a separate world made with seed 1 (14 clips)" in md  # the probes' test set: a second world
    assert len(list((out / "data_test").glob("*/clip.mp4"))) == 14
    assert set(report["margin_95ci_paired_bootstrap"]) == set(report["margin_pretrained_minus_random"])
    assert str(report_dir / "report.md") in capsys.readouterr().out
    # a second run reuses the synthetic world (resumable generation) and overwrites the report;
    # --strict turns a failed pretrained-vs-random check into exit status 3
    rc = main(["demo", "--out", str(out), "--config", str(cfg), "--num", "30", "--frames", "8", "--size", "32",
               "--max-steps", "1", "--workers", "1", "--test-num", "0", "--quiet", "--strict"])
    report = json.loads((report_dir / "report.json").read_text())
    assert "scored on its test split" in (report_dir / "report.md").read_text()
    assert report["pretraining"]["iterations"] == 1
    assert rc == (0 if report["pretrained_beats_random_on_every_task"] else 3)


def test_resampling_metrics_match_the_downstream_metrics_and_bootstrap_brackets_the_margin():
    import numpy as np

    from marlin.demo import bootstrap_margin, metric_value
    from marlin.downstream.metrics import compute_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 6))
    s = y + rng.normal(0, 1.5, y.shape)
    assert abs(metric_value("multilabel", "auc", s, y) - compute_metrics("multilabel", s, y)["auc"]) < 1e-6
    binary = compute_metrics("binary", s[:, 0], y[:, 0])["auc"]
    assert abs(metric_value("binary", "auc", s[:, 0], y[:, 0]) - binary) < 1e-6
    yc = rng.integers(0, 7, 200)
    sc = rng.normal(size=(200, 7))
    sc[np.arange(200), yc] += 1
    assert metric_value("multiclass", "acc", sc, yc) == compute_metrics("multiclass", sc, yc)["acc"]
    # a clearly better predictor gets an interval above zero; the same predictor gets one around zero
    weak = {"test_scores": s, "test_targets": y}
    strong = {"test_scores": y + rng.normal(0, 0.3, y.shape), "test_targets": y}
    lo, hi = bootstrap_margin("action", weak, strong, n=300)
    assert 0 < lo < hi
    lo, hi = bootstrap_margin("action", weak, weak, n=50)
    assert lo == hi == 0
