"""`marlin demo` end to end at a tiny budget: synthetic world -> pretraining -> probes -> report files."""
import json

import yaml

from marlin.cli import main
from marlin.demo import TASKS
from marlin.train import pretrain_config

TINY = {
    "model_name": "demo_test", "img_size": 32, "patch_size": 16, "clip_frames": 4, "tubelet_size": 2,
    "mask_strategy": "fasking", "temporal_sample_rate": 1, "mask_percentage_target": 0.75,
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
        for probe in ("logistic", "sgd", "ridge"):
            assert 0.0 <= report["results"][name]["expression"][probe]["test"]["acc"] <= 1.0
    for png in ("loss_curve.png", "reconstruction.png", "fasking_masks.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (report_dir / "report.md").read_text()
    assert "| appearance | test auc | **logistic** (check) |" in md and "| expression | test acc | sgd |" in md
    assert "Pretrained beats random by a clear margin" in md and report["check_probe"] == "logistic"
    assert "every 4-frame window of each video at the pretraining sample rate (1)" in md  # 8 frames: 2 windows
    assert "scored on a separate world made with seed 1 (14 clips)" in md  # the probes' test set: a second world
    assert len(list((out / "data_test").glob("*/clip.mp4"))) == 14
    assert set(report["margin_95ci_paired_bootstrap"]) == set(report["margin_pretrained_minus_random"])
    assert report["probes"]["logistic"]["margin_pretrained_minus_random"] == report["margin_pretrained_minus_random"]
    for probe in ("sgd", "ridge"):
        assert set(report["probes"][probe]["margin_95ci_paired_bootstrap"]) == set(TASKS)
    assert "- ridge (closed-form ridge" in md and "- sgd (the toolkit's SGD linear probe" in md
    assert report["pretraining"]["precision"] == "32-true"
    assert str(report_dir / "report.md") in capsys.readouterr().out
    # a second run reuses the synthetic world (resumable generation) and overwrites the report; --ablation adds
    # the other masking strategies' columns; --strict turns a failed pretrained-vs-random check into exit status 3
    rc = main(["demo", "--out", str(out), "--config", str(cfg), "--num", "30", "--frames", "8", "--size", "32",
               "--max-steps", "1", "--workers", "1", "--test-num", "0", "--quiet", "--strict", "--ablation"])
    report = json.loads((report_dir / "report.json").read_text())
    md = (report_dir / "report.md").read_text()
    assert "scored on its test split" in md and "| pretrained (tube masking) | pretrained (random masking) |" in md
    assert set(report["results"]) == {"random init", "fasking", "tube", "random"}
    assert report["pretraining"]["iterations"] == 1
    assert rc == (0 if report["pretrained_beats_random_on_every_task"] else 3)
    # a smaller --test-num on a larger reused test world scores only its first items
    main(["demo", "--out", str(out), "--config", str(cfg), "--num", "30", "--frames", "8", "--size", "32",
          "--max-steps", "1", "--workers", "1", "--test-num", "10", "--quiet"])
    assert "scored on a separate world made with seed 1 (10 clips)" in (report_dir / "report.md").read_text()


def test_resampling_metrics_match_the_downstream_metrics_and_bootstrap_brackets_the_margin():
    import numpy as np

    from marlin.demo import bootstrap_margin, metric_value
    from marlin.downstream.metrics import compute_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 6))
    s = y + rng.normal(0, 1.5, y.shape)
    assert abs(metric_value("multilabel", "auc", s, y) - compute_metrics("multilabel", s, y)["auc_label_mean"]) < 1e-6
    binary = compute_metrics("binary", s[:, 0], y[:, 0])["auc"]
    assert abs(metric_value("binary", "auc", s[:, 0], y[:, 0]) - binary) < 1e-6
    yc = rng.integers(0, 7, 200)
    sc = rng.normal(size=(200, 7))
    sc[np.arange(200), yc] += 1
    assert metric_value("multiclass", "acc", sc, yc) == compute_metrics("multiclass", sc, yc)["acc"]
    # a clearly better predictor gets an interval above zero; the same predictor gets one around zero
    weak = {"scores": {"logistic": s}, "targets": y}
    strong = {"scores": {"logistic": y + rng.normal(0, 0.3, y.shape)}, "targets": y}
    lo, hi = bootstrap_margin("action", weak, strong, n=300)
    assert 0 < lo < hi
    lo, hi = bootstrap_margin("action", weak, weak, n=50)
    assert lo == hi == 0


def test_video_windows_cover_every_sampled_frame():
    from marlin.demo import video_windows

    assert video_windows(32, 16, 2) == [list(range(0, 32, 2))]            # one window at the pretraining rate
    assert video_windows(32, 16, 1) == [list(range(16)), list(range(16, 32))]
    assert video_windows(40, 16, 1) == [list(range(16)), list(range(16, 32)), list(range(24, 40))]  # tail window
    assert video_windows(10, 16, 2) == [list(range(10)) + [9] * 6]        # shorter than a window: rate 1, padded


def test_encode_items_reads_every_window_and_pools_over_all_of_them(tmp_path):
    import numpy as np
    import torch

    from marlin.demo import encode_items, spatial_readout
    from marlin.extract import clips_to_tensor
    from marlin.models import Marlin

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    cfg = pretrain_config(tmp_path / "tiny.yaml").model
    torch.manual_seed(0)
    model = Marlin(cfg, full_model=False).eval()
    rng = np.random.default_rng(0)

    class Item:  # an in-memory video of 8 frames: two 4-frame windows at rate 1
        def __init__(self):
            self.frames = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
            self.num_frames = 8

        def read_frames(self, idx):
            return self.frames[idx]

    items = [Item() for _ in range(3)]
    feats = encode_items(model, items, progress=False, sample_rate=1, batch_size=3)
    assert feats.shape == (3, 2 * 4 * 16)
    with torch.no_grad():  # item 1 by hand: the tokens of both windows, statistics over all 2 x 2 time slots
        tokens = model.extract_features(clips_to_tensor([items[1].frames[:4], items[1].frames[4:]]), keep_seq=True)
        t, h, w = cfg.grid
        want = spatial_readout(tokens.reshape(1, -1, tokens.shape[-1]), (2 * t, h, w))[0].numpy()
    np.testing.assert_allclose(feats[1], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(encode_items(model, items, progress=False, sample_rate=1, batch_size=16), feats,
                               rtol=1e-5, atol=1e-5)  # batching windows differently changes nothing
    pooled = encode_items(model, items, progress=False, sample_rate=1, readout="pooled")
    with torch.no_grad():
        per_window = model.extract_features(clips_to_tensor([items[1].frames[:4], items[1].frames[4:]]), keep_seq=False)
    np.testing.assert_allclose(pooled[1], per_window.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    # several encoders in one pass (each video decoded once) give each encoder's own features
    torch.manual_seed(1)
    other = Marlin(cfg, full_model=False)
    reads = []
    for it in items:
        it.read_frames = (lambda f, it=it: reads.append(1) or it.frames[f])
    both = encode_items({"a": model, "b": other}, items, progress=False, sample_rate=1, batch_size=3)
    assert len(reads) == len(items)
    np.testing.assert_allclose(both["a"], feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both["b"], encode_items(other, items, progress=False, sample_rate=1), rtol=1e-5,
                               atol=1e-5)
    assert not np.allclose(both["a"], both["b"])


def test_ridge_probe_recovers_a_linear_rule_and_not_noise():
    import numpy as np

    from marlin.demo import metric_value, ridge_probe

    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 3))
    x = {s: rng.normal(size=(n, 50)) for s, n in (("train", 300), ("val", 100), ("test", 200))}
    y = {s: (v @ w).argmax(1) for s, v in x.items()}  # a 3-class linear rule
    scores = ridge_probe(*[(x[s], y[s]) for s in ("train", "val", "test")], "multiclass", "acc")
    assert scores.shape == (200, 3) and metric_value("multiclass", "acc", scores, y["test"]) > 0.8
    noise = {s: rng.normal(size=(len(v), 50)) for s, v in x.items()}  # features unrelated to the labels
    scores = ridge_probe(*[(noise[s], y[s]) for s in ("train", "val", "test")], "multiclass", "acc")
    assert metric_value("multiclass", "acc", scores, y["test"]) < 0.5
    yb = {s: (v @ w[:, 0] > 0).astype(int) for s, v in x.items()}
    scores = ridge_probe(*[(x[s], yb[s]) for s in ("train", "val", "test")], "binary", "auc")
    assert metric_value("binary", "auc", scores[:, 0], yb["test"]) > 0.95
