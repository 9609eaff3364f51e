"""Linear probing, fine-tuning, evaluation and Grad-CAM end to end on a tiny synthetic colour task."""
import json
import os

import numpy as np
import pytest
import torch
import yaml

from helpers import tiny_config
from marlin.cli import main
from marlin.models import Marlin

DEVICE = os.environ.get("MARLIN_TEST_DEVICE", "cpu")  # fine-tuning device ("cuda" on a GPU machine)
TINY = tiny_config(encoder_embed_dim=32, decoder_embed_dim=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """24 tiny clips, label 1 = warm (red) tint, 0 = cold (blue) tint, over random texture; one broken file."""
    from marlin.video import write_video

    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    lines = ["path,warm"]
    for i in range(24):
        label = i % 2
        frames = rng.integers(0, 140, (10, 32, 32, 3)).astype(np.uint8)
        frames[..., 0 if label else 2] += 100
        write_video(root / "videos" / f"v{i:02d}.mp4", frames, fps=25)
        lines.append(f"videos/v{i:02d}.mp4,{label}")
    (root / "videos" / "broken.mp4").write_bytes(b"not a video")
    lines.append("videos/broken.mp4,1")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    split = {"train": [f"videos/v{i:02d}" for i in range(14)] + ["videos/broken"],
             "val": [f"videos/v{i:02d}" for i in range(14, 18)], "test": [f"videos/v{i:02d}" for i in range(18, 24)]}
    for k, v in split.items():
        (root / f"{k}.txt").write_text("\n".join(v) + "\n")
    model = Marlin(TINY, full_model=False)
    model.save(root / "tiny.safetensors")
    return root


def _config(world, tmp_path, name, **extra):
    cfg = {"dataset": "csv", "root": str(world), "task": "warm",
           "encoder": {"model": None, "weights": str(world / "tiny.safetensors")},
           "windows": {"sample_rate": 1, "stride": 2}, "out": str(tmp_path / name),
           "features": str(world / "features"), **extra}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_probe_end_to_end_resumes_and_skips_bad_video(world, tmp_path, capsys):
    cfg = _config(world, tmp_path, "lp", train={"lr": 1e-2, "batch_size": None, "max_epochs": 300,
                                                "eval_every": 10, "patience": 10})
    assert main(["probe", str(cfg), "--few-shot", "100%", "50%", "--no-progress"]) == 1
    out = tmp_path / "lp"
    data = json.loads((out / "metrics.json").read_text())
    full = next(r for r in data["runs"] if r["few_shot"] == 1.0)
    assert full["n_train"] == 14 and full["n_test"] == 6
    assert full["test"]["acc"] >= 5 / 6 and full["test"]["auc"] > 0.9  # colour is linearly decodable
    half = next(r for r in data["runs"] if r["few_shot"] == 0.5)
    assert half["n_train"] == 8  # round(0.5 * 7) = 4 per class
    assert (out / "fold1_fs100pct_seed0" / "head.safetensors").is_file()
    assert "| 100% (14) |" in (out / "results.md").read_text()
    assert "broken.mp4" in (out / "skipped_videos_fold1.txt").read_text()
    (feats,) = (world / "features").glob("tiny-*/videos/v00.npy")  # a folder keyed by encoder, windows, data
    n_clips = np.load(feats).shape
    assert n_clips == (3, 32)  # 10 frames, official windows of 4 at stride 2: starts 0, 2, 4 (< 10 - 4)
    stamp = feats.stat().st_mtime_ns
    assert main(["probe", str(cfg), "--few-shot", "100%", "50%", "--no-progress"]) == 1  # resumes
    assert feats.stat().st_mtime_ns == stamp
    assert json.loads((out / "metrics.json").read_text())["runs"][0]["test"] == full["test"]
    # evaluate the saved head
    assert main(["evaluate", str(out / "fold1_fs100pct_seed0" / "head.safetensors"), "--no-progress"]) == 0
    ev = json.loads((out / "fold1_fs100pct_seed0" / "eval_test.json").read_text())
    assert ev["metrics"]["acc"] == pytest.approx(full["test"]["acc"])


def test_feature_cache_is_keyed_by_the_encoder(world, tmp_path):
    """Encoder B in the folder where encoder A cached its features gets its own features, not A's; an unreadable
    weights file fails; a folder of features made otherwise is refused, naming the difference."""
    from marlin.downstream.features import FEATURES_RECORD

    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    Marlin(TINY, full_model=False).save(other)
    shared = tmp_path / "cache"
    for name, weights in (("a", world / "tiny.safetensors"), ("b", other)):
        cfg = _config(world, tmp_path, name, features=str(shared), solver="logistic",
                      encoder={"model": None, "weights": str(weights)})
        assert main(["probe", str(cfg), "--no-progress"]) == 1
    folders = sorted(p.parent.parent for p in shared.glob("*/videos/v00.npy"))
    assert len(folders) == 2
    a, b = (np.load(f / "videos" / "v00.npy") for f in folders)
    assert not np.allclose(a, b)
    from safetensors.torch import load_file

    heads = [load_file(tmp_path / n / "fold1_fs100pct_seed0" / "head.safetensors")["weight"] for n in "ab"]
    assert not torch.allclose(*heads)  # B's head was fitted on B's features
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    cfg = _config(world, tmp_path, "c", features=str(shared), encoder={"model": None, "weights": str(garbage)})
    assert main(["probe", str(cfg), "--no-progress"]) != 0
    # a folder given directly: its record must match (other windows here), and bare .npy files are refused
    cfg = _config(world, tmp_path, "d", features=str(folders[0]), windows={"sample_rate": 1, "stride": 3})
    assert "windows.stride: cached 2, needed 3" in capsys_text(main, ["probe", str(cfg), "--no-progress"])
    (folders[0] / FEATURES_RECORD).unlink()
    cfg = _config(world, tmp_path, "e", features=str(folders[0] / "videos"))
    assert "without a features.json record" in capsys_text(main, ["probe", str(cfg), "--no-progress"])


def capsys_text(fn, argv) -> str:
    """stderr of a CLI call (the error line)."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert fn(argv) != 0
    return err.getvalue()


def test_probe_with_the_logistic_solver(world, tmp_path):
    cfg = _config(world, tmp_path, "lbfgs", solver="logistic")
    assert main(["probe", str(cfg), "--no-progress"]) == 1
    out = tmp_path / "lbfgs"
    run = json.loads((out / "metrics.json").read_text())["runs"][0]
    assert run["solver"] == "logistic" and "best_epoch" not in run
    assert not (out / "fold1_fs100pct_seed0" / "curves.png").exists()  # no epochs to draw
    assert run["penalty"] in {float(k) for k in run["val_by_penalty"]}
    assert run["val"]["acc"] == max(run["val_by_penalty"].values())
    assert run["test"]["acc"] >= 5 / 6  # colour is linearly decodable
    assert f"| L2 {run['penalty']:g} |" in (out / "results.md").read_text()
    assert main(["evaluate", str(out / "fold1_fs100pct_seed0" / "head.safetensors"), "--no-progress"]) == 0
    bad = _config(world, tmp_path, "bad_solver", solver="newton")
    assert main(["probe", str(bad), "--no-progress"]) != 0


def test_finetune_end_to_end(world, tmp_path):
    cfg = _config(world, tmp_path, "ft", train={"lr": 1e-3, "batch_size": 7, "max_epochs": 4, "patience": 4})
    assert main(["finetune", str(cfg), "--no-progress", "--device", DEVICE]) == 1
    out = tmp_path / "ft"
    run = json.loads((out / "fold1_fs100pct_seed0" / "metrics.json").read_text())
    assert len(run["history"]) == 4 and run["n_test"] == 6
    assert run["history"][-1]["train_loss"] < run["history"][0]["train_loss"]
    assert run["test"]["auc"] > 0.8
    # the epochs drawn beside the weights
    import cv2

    assert cv2.imread(str(out / "fold1_fs100pct_seed0" / "curves.png")).shape == (360, 1400, 3)
    ckpt = out / "fold1_fs100pct_seed0" / "model.safetensors"
    assert main(["evaluate", str(ckpt), "--no-progress"]) == 0
    ev = json.loads((out / "fold1_fs100pct_seed0" / "eval_test.json").read_text())
    assert ev["metrics"]["auc"] == pytest.approx(run["test"]["auc"])


def test_finetune_interrupted_resumes_in_its_out_folder(world, tmp_path, monkeypatch, capsys):
    """A run stopped mid-training (Ctrl-C in epoch 3) goes on from its training state on the next call, to the
    result of an uninterrupted run; the state is removed once the run is done; another config is refused."""
    import marlin.downstream.finetune as ft

    train = {"lr": 1e-3, "batch_size": 7, "max_epochs": 4, "patience": 4}
    assert main(["finetune", str(_config(world, tmp_path, "ref", train=train)), "--no-progress", "--device",
                 DEVICE]) == 1
    cfg = _config(world, tmp_path, "ft", train=train)
    real, calls, stop = ft.video_logits, [], True

    def stop_in_epoch_3(*a, **k):
        calls.append(1)
        if len(calls) == 3 and stop:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ft, "video_logits", stop_in_epoch_3)
    assert main(["finetune", str(cfg), "--no-progress", "--device", DEVICE]) == 130
    state = tmp_path / "ft" / "fold1_fs100pct_seed0" / ft.TRAIN_STATE
    assert state.is_file() and not state.with_name("metrics.json").exists()
    calls.clear()
    stop = False
    other = _config(world, tmp_path, "ft", train={**train, "lr": 2e-3})
    assert main(["finetune", str(other), "--no-progress", "--device", DEVICE]) == 2
    assert "train_state.safetensors: exists with another training config (train.lr: checkpoint 0.001, this run " \
           "0.002)" in capsys.readouterr().err
    assert main(["finetune", str(_config(world, tmp_path, "ft", train=train)), "--no-progress", "--device",
                 DEVICE]) == 1
    assert len(calls) == 2 + 1  # validation of epochs 3 and 4, then the test split
    run, ref = (json.loads((tmp_path / n / "fold1_fs100pct_seed0" / "metrics.json").read_text()) for n in ("ft", "ref"))
    assert run == ref and len(run["history"]) == 4
    assert not state.exists()


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text("dataset: csv\nroot: /nowhere\nlearning_rate: 3\n")
    assert main(["probe", str(p)]) == 2  # bad configuration
    assert "bad.yaml: unknown key 'learning_rate'" in capsys.readouterr().err


def test_gradcam_png_and_complementary_binary_maps(world, tmp_path):
    import cv2
    import torch

    from marlin.downstream.gradcam import token_cam
    from marlin.downstream.model import classifier_from_checkpoint

    cfg = _config(world, tmp_path, "cam", train={"lr": 1e-2, "batch_size": None, "max_epochs": 50, "patience": 5})
    assert main(["probe", str(cfg), "--no-progress"]) == 1
    ckpt = tmp_path / "cam" / "fold1_fs100pct_seed0" / "head.safetensors"
    out = tmp_path / "png"
    assert main(["gradcam", str(ckpt), str(world / "videos" / "v01.mp4"), "--clips", "all", "--out", str(out),
                 "--target", "1", "--per-frame"]) == 0
    pngs = sorted(out.glob("v01_clip*_1.png"))
    assert len(pngs) == 3
    img = cv2.imread(str(pngs[0]))
    assert img.shape == (2 * 32, 4 * 32, 3)  # frames over overlays, 4 frames per clip
    assert len(list((out / "v01_clip000_1").glob("*.png"))) == 4
    # the two classes of a binary task explain complementary tokens: +logit and -logit
    model, _ = classifier_from_checkpoint(ckpt)
    x = torch.rand(1, 3, 4, 32, 32)
    pos, _ = token_cam(model, x, 0, 1.0)
    neg, _ = token_cam(model, x, 0, -1.0)
    assert pos.shape == (2, 2, 2)
    assert torch.all(pos * neg == 0) and (pos + neg).sum() > 0
    assert main(["gradcam", str(ckpt), str(world / "videos" / "v01.mp4"), "--clips", "9", "--out", str(out)]) == 2


def test_frame_folder_gives_the_same_features_as_the_video(world, tmp_path):
    import cv2

    from marlin.downstream.features import compute_features
    from marlin.video import read_frames

    model = Marlin.from_file(None, world / "tiny.safetensors", full_model=False)
    video = world / "videos" / "v03.mp4"
    folder = tmp_path / "v03"
    folder.mkdir()
    for i, f in enumerate(read_frames(video)):  # lossless copies of the decoded frames
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    a = compute_features(model, video, sample_rate=1, stride=2)
    b = compute_features(model, folder, sample_rate=1, stride=2)
    assert a.shape == b.shape == (3, 32)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_finetune_is_deterministic_under_a_seed(world, tmp_path):
    import torch

    from marlin.downstream.config import load_run_config
    from marlin.downstream.datasets import load_dataset
    from marlin.downstream.finetune import finetune_one

    cfg = load_run_config(str(_config(world, tmp_path, "det", train={"lr": 1e-3, "batch_size": 7, "max_epochs": 1})))
    ds = load_dataset("csv", world, "warm")
    runs = []
    for _ in range(2):
        model, run, _ = finetune_one(cfg, ds, 0.5, 3, tmp_path / "seg", torch.device(DEVICE), progress=False)
        runs.append((run["history"][0]["train_loss"], run["test"]["auc"], model.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][2], runs[1][2])


def test_finetune_bf16_autocast_runs_and_evaluates(world, tmp_path):
    cfg = _config(world, tmp_path, "bf16", precision="bf16", train={"lr": 1e-3, "batch_size": 7, "max_epochs": 1})
    assert main(["finetune", str(cfg), "--no-progress", "--device", DEVICE, "--few-shot", "50%"]) == 1
    ckpt = tmp_path / "bf16" / "fold1_fs50pct_seed0" / "model.safetensors"
    run = json.loads((ckpt.parent / "metrics.json").read_text())
    assert np.isfinite(run["history"][0]["train_loss"]) and run["n_test"] == 6
    assert main(["evaluate", str(ckpt), "--no-progress"]) == 0
    ev = json.loads((ckpt.parent / "eval_test.json").read_text())
    assert ev["metrics"]["auc"] == pytest.approx(run["test"]["auc"])
    # Grad-CAM of a fine-tuned (bf16) model
    assert main(["gradcam", str(ckpt), str(world / "videos" / "v02.mp4"), "--out", str(tmp_path / "cam")]) == 0
    assert len(list((tmp_path / "cam").glob("v02_clip000_*.png"))) == 1


def test_cache_features_match_the_official_implementation(fixtures_dir, tmp_path):
    """The LP cache path gives the official features of a real face-crop video (tiny224 fixture)."""
    from marlin.downstream.datasets import Sample
    from marlin.downstream.features import dataset_features

    model = Marlin.from_file(str(fixtures_dir / "tiny.yaml"), fixtures_dir / "tiny.encoder.pt", full_model=False)
    sample = Sample("cropped05", fixtures_dir / "cropped05.mp4", 0)
    feats, failures = dataset_features([sample], tmp_path, model, progress=False)
    official = np.load(fixtures_dir / "cropped05.features.npy")
    assert failures == [] and feats["cropped05"].shape == official.shape
    np.testing.assert_allclose(feats["cropped05"], official, atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "cropped05.npy"), feats["cropped05"])


def test_probe_runs_are_redone_when_the_weights_or_the_precision_change(world, tmp_path):
    """A finished run is reused only for the same weights content (not the same path) and the same resolved
    extraction precision: otherwise metrics of other features would come back as this run's."""
    weights = tmp_path / "enc.safetensors"
    torch.manual_seed(1)
    Marlin(TINY, full_model=False).save(weights)
    cfg = _config(world, tmp_path, "lp", encoder={"model": None, "weights": str(weights)},
                  features=str(tmp_path / "features"), train={"max_epochs": 5})
    run = tmp_path / "lp" / "fold1_fs100pct_seed0" / "metrics.json"

    def hash_after(*extra):
        assert main(["probe", str(cfg), "--no-progress", *extra]) == 1
        return json.loads(run.read_text())["hash"]

    first = hash_after()
    assert hash_after() == first  # unchanged: reused
    torch.manual_seed(2)
    Marlin(TINY, full_model=False).save(weights)  # other weights under the same path
    second = hash_after()
    assert second != first
    assert hash_after("--set", "extract_precision=bf16") != second
