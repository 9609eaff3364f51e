"""`marlin predict` and `Predictor`: a probe run and a fine-tuning run of the synthetic world applied to its test
videos give the scores behind `marlin evaluate`'s metrics; raw videos with --crop-face; every refusal."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import pytest
import yaml

from helpers import tiny_config
from marlin.cli import main
from marlin.models import Marlin

SIZE = 112  # the face pipeline finds the synthetic faces in raw videos of 2 * 112 x 1.5 * 112 pixels
TINY = tiny_config(img_size=SIZE, encoder_embed_dim=16)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """14 synthetic items of 8 frames (with their raw videos), a tiny encoder, a probe run (multi-label
    appearance), a probe run (binary manipulated) and a fine-tuning run (multi-class expression)."""
    from marlin.synth import generate_dataset

    root = tmp_path_factory.mktemp("predict")
    ids = [p.name for p in generate_dataset(root / "items", 14, frames=8, size=SIZE, seed=3, raw_videos=True,
                                            progress=False)]
    for split, part in (("train", ids[:8]), ("val", ids[8:10]), ("test", ids[10:])):
        (root / "items" / f"{split}.txt").write_text("\n".join(part) + "\n")
    Marlin(TINY, full_model=False).save(root / "tiny.safetensors")
    runs = {}
    for name, mode, task, extra in (
            ("lp_app", "probe", "appearance", {"train": {"max_epochs": 5, "batch_size": None}}),
            ("lp_bin", "probe", "manipulated", {"train": {"max_epochs": 5, "batch_size": None}}),
            ("ft_expr", "finetune", "expression", {"train": {"max_epochs": 1, "batch_size": 4}, "workers": 1,
                                                    "device": "cpu"})):
        cfg = {"dataset": "items", "root": str(root / "items"), "task": task,
               "encoder": {"model": None, "weights": str(root / "tiny.safetensors")},
               "windows": {"sample_rate": 1, "stride": 2}, "out": str(root / name), **extra}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        assert main([mode, str(path), "--no-progress"]) == 0
        runs[name] = root / name
    return root, runs


def _test_items(root):
    return [root / "items" / line for line in (root / "items" / "test.txt").read_text().split()]


def _predict(argv, capsys=None):
    code = main(["predict", *map(str, argv), "--no-progress"])
    return code, (capsys.readouterr().err if capsys else "")


@pytest.mark.parametrize("run", ["lp_app", "lp_bin", "ft_expr"])
def test_predict_gives_the_scores_behind_evaluate(world, tmp_path, run):
    root, runs = world
    (ckpt,) = runs[run].rglob("*.safetensors")
    assert main(["evaluate", str(ckpt), "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    ev = json.loads((tmp_path / "eval" / "eval_test.json").read_text())
    items = _test_items(root)
    out = tmp_path / "pred"
    assert main(["predict", *map(str, items), "--run", str(runs[run]), "--out", str(out), "--per-clip",
                 "--no-progress"]) == 0
    pred = json.loads((out / "predictions.json").read_text())
    by_source = {p["source"]: p for p in pred["predictions"]}
    assert len(ev["videos"]) == len(items) == len(by_source)
    for v in ev["videos"]:
        item = str(Path(v["source"]).parent)  # the item's clip.mp4
        assert np.allclose(by_source[item]["logits"], v["logits"], atol=1e-6, rtol=0)
    task = ev["task"]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["name"] for r in rows] == [p.name for p in items]
    first = by_source[str(items[0])]
    logits = np.asarray(first["logits"], np.float64)
    if task["kind"] == "multiclass":
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        assert rows[0]["predicted"] == task["labels"][int(np.argmax(probs))]
        assert [float(rows[0][f"prob_{n}"]) for n in task["labels"]] == pytest.approx(probs, abs=2e-6)
    else:
        probs = 1 / (1 + np.exp(-logits))
        names = task["labels"][-1:] if task["kind"] == "binary" else task["labels"]
        assert [float(rows[0][f"prob_{n}"]) for n in names] == pytest.approx(probs, abs=2e-6)
        if task["kind"] == "multilabel":
            assert [int(rows[0][f"pred_{n}"]) for n in names] == [int(p >= 0.5) for p in probs]
        else:
            assert rows[0]["predicted"] == task["labels"][int(probs[0] >= 0.5)]
    # per-clip rows, and the aggregation the run's evaluation uses
    clips = np.asarray(first["clips"])
    assert clips.shape == (first["n_clips"], len(logits)) and first["n_clips"] == 2  # 8 frames: windows of 4 start at 0, 2 (< 8 - 4)
    if pred["run"]["mode"] == "finetune":
        assert np.allclose(clips.mean(0), logits, atol=1e-6)
    # the record: run, encoder fingerprint, options, in both files
    assert pred["encoder"]["weights_sha256"] and pred["options"]["faces"] == "one"
    assert rows[0]["encoder_sha256"] == pred["encoder"]["weights_sha256"]
    assert json.loads(rows[0]["options"])["precision"] == "32"


def test_python_api(world, monkeypatch):
    import marlin.extract
    from marlin.downstream import Prediction, Predictor

    root, runs = world
    checkpoint = runs["ft_expr"] / "fold1_fs100pct_seed0" / "model.safetensors"
    monkeypatch.setattr(marlin.extract, "CPU_TOKENS_PER_CALL", 1)  # every clip fills a call on this CPU
    assert Predictor.from_run(checkpoint).batch_size == 1  # clips per call follow where the model runs
    assert Predictor.from_run(checkpoint, batch_size=2).batch_size == 2
    monkeypatch.undo()
    predictor = Predictor.from_run(checkpoint)
    item = _test_items(root)[0]
    p = predictor.predict_video(item)
    assert isinstance(p, Prediction) and p.predicted in predictor.task.labels
    assert sum(p.probabilities.values()) == pytest.approx(1.0)
    assert p.name == item.name and p.face is None


def test_resumes_and_reports_a_bad_video(world, tmp_path, capsys):
    root, runs = world
    items = _test_items(root)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = tmp_path / "pred"
    code, err = _predict([*items, bad, "--run", runs["lp_app"], "--out", out], capsys)
    assert code == 1 and "bad.mp4" in (out / "failed.txt").read_text()
    first = out / "videos" / f"{items[0].name}.json"
    stamp = first.stat().st_mtime_ns
    bad.unlink()
    assert _predict([*items, "--run", runs["lp_app"], "--out", out])[0] == 0
    assert first.stat().st_mtime_ns == stamp  # reused, not recomputed
    assert not (out / "failed.txt").exists()
    # another run into the same folder is refused, naming what differs
    code, err = _predict([*items, "--run", runs["lp_bin"], "--out", out], capsys)
    assert code == 2 and "other settings" in err and "predict" in err


def test_crop_face_on_a_raw_video_matches_its_preprocessed_item(world, tmp_path):
    """The raw synthetic video through the face pipeline on the spot gives the predictions of the item that
    `marlin preprocess` makes of it; they differ only by the item's H.264 encoding of the crops."""
    root, runs = world
    raw = sorted((root / "items" / "raw").glob("*.mp4"))[0]
    video = tmp_path / "videos" / raw.name
    video.parent.mkdir()
    shutil.copy(raw, video)
    assert main(["preprocess", str(video.parent), str(tmp_path / "pre"), "--size", str(SIZE), "--quiet"]) == 0
    for name, argv in (("a", [video, "--crop-face"]), ("b", [tmp_path / "pre"])):
        assert _predict([*argv, "--run", runs["ft_expr"], "--out", tmp_path / name])[0] == 0
    a, b = (json.loads((tmp_path / n / "predictions.json").read_text())["predictions"] for n in "ab")
    assert len(a) == len(b) == 1 and a[0]["name"] == b[0]["name"] == raw.stem
    assert a[0]["n_clips"] == b[0]["n_clips"]
    pa, pb = (np.asarray(list(p[0]["probabilities"].values())) for p in (a, b))
    assert np.abs(pa - pb).max() < 0.02, (pa, pb)
    assert json.loads((tmp_path / "a" / "predict.json").read_text())["options"]["crop_face"] is True


def test_refusals(world, tmp_path, capsys):
    root, runs = world
    item = _test_items(root)[0]
    out = tmp_path / "o"

    def refused(argv, *words):
        code, err = _predict(argv, capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("marlin predict: error:"), err
        assert "Traceback" not in err
        for w in words:
            assert w in lines[0], (w, lines[0])
        return lines[0]

    refused([item, "--run", tmp_path / "nope", "--out", out], "nope", "no such run")
    (tmp_path / "empty").mkdir()
    refused([item, "--run", tmp_path / "empty", "--out", out], "empty", "holds no head.safetensors")
    refused([tmp_path / "missing.mp4", "--run", runs["lp_app"], "--out", out], "missing.mp4", "does not exist")
    refused([item, "--run", runs["lp_app"], "--out", out, "--faces", "all"], "--crop-face")
    refused([item, "--run", runs["lp_app"], "--out", out, "--precision", "16"], "--precision 16")
    refused([item, "--run", runs["ft_expr"], "--out", out, "--encoder", root / "tiny.safetensors"],
            "carries its own encoder")
    # two runs in one folder
    both = tmp_path / "both"
    shutil.copytree(runs["lp_app"], both / "a")
    shutil.copytree(runs["lp_bin"], both / "b")
    refused([item, "--run", both, "--out", out], "holds 2 runs", "head.safetensors")
    # the recorded encoder changed, moved, or given at a path with other weights
    run = tmp_path / "run"
    shutil.copytree(runs["lp_app"], run)
    weights = root / "tiny.safetensors"
    from marlin.checkpoints import file_sha256

    want = file_sha256(weights)
    moved = tmp_path / "moved.safetensors"
    shutil.copy(weights, moved)
    other = tmp_path / "other.safetensors"
    Marlin(TINY, full_model=False).save(other)
    got = file_sha256(other)
    refused([item, "--run", run, "--out", out, "--encoder", other], str(other), got, want)
    assert _predict([item, "--run", run, "--out", tmp_path / "ok", "--encoder", moved])[0] == 0
    backup = tmp_path / "backup.safetensors"
    shutil.move(weights, backup)
    try:
        refused([item, "--run", run, "--out", out], str(weights), "missing", want)
        shutil.copy(other, weights)
        refused([item, "--run", run, "--out", out], str(weights), got, want)
    finally:
        shutil.move(backup, weights)
    assert not out.exists() or not any(out.rglob("*.json"))  # nothing written by a refused run


def test_a_run_without_an_encoder_record_is_refused(world, tmp_path, capsys):
    from marlin.downstream.model import load_downstream_checkpoint, save_downstream_checkpoint

    root, runs = world
    (ckpt,) = runs["lp_app"].rglob("head.safetensors")
    tensors, meta = load_downstream_checkpoint(ckpt)
    del meta["encoder"]
    old = tmp_path / "head.safetensors"
    save_downstream_checkpoint(old, tensors, meta)
    code, err = _predict([_test_items(root)[0], "--run", old, "--out", tmp_path / "o"], capsys)
    assert code == 2 and "does not record its encoder" in err


def test_faces_all_gives_one_row_per_face(world, tmp_path):
    """Two raw synthetic videos side by side: one prediction per face track, each close to the prediction of its
    video alone (the crops differ a little: the tracks are cut from the composite)."""
    from marlin.video import read_frames, write_video

    root, runs = world
    left, right = sorted((root / "items" / "raw").glob("*.mp4"))[:2]
    a, b = read_frames(left), read_frames(right)
    write_video(tmp_path / "two.mp4", np.concatenate([a, b], axis=2), fps=25)
    common = ["--run", runs["ft_expr"], "--crop-face", "--min-track-frames", "4"]
    assert _predict([tmp_path / "two.mp4", *common, "--faces", "all", "--out", tmp_path / "all"])[0] == 0
    rows = list(csv.DictReader((tmp_path / "all" / "predictions.csv").open()))
    assert [(r["name"], r["face"]) for r in rows] == [("two", "face0"), ("two", "face1")]
    assert _predict([left, right, *common, "--out", tmp_path / "one"])[0] == 0
    single = list(csv.DictReader((tmp_path / "one" / "predictions.csv").open()))
    labels = [c for c in rows[0] if c.startswith("prob_")]
    for face, alone in zip(rows, single):  # face0 is the left one (tracks are named left to right)
        diff = max(abs(float(face[c]) - float(alone[c])) for c in labels)
        assert diff < 0.05, (face, alone)


def test_parts_and_a_merge_equal_one_run(world, tmp_path, capsys):
    """`marlin predict --part i/N` on many machines, then `--merge`: the same files as one run, byte for byte
    (issue 28, 4); a part made with other options, a missing part and parts of other inputs are refused."""
    root, runs = world
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    inputs = [*_test_items(root), root / "items" / "synth_000008", root / "items" / "synth_000009", bad]
    common = [*inputs, "--run", runs["lp_app"], "--per-clip"]
    assert _predict([*common, "--out", tmp_path / "whole"])[0] == 1  # bad.mp4 fails, the rest is written
    parts = tmp_path / "parts"
    for i in range(2):
        assert _predict([*common, "--part", f"{i}/2", "--out", parts])[0] in (0, 1)
    assert not (parts / "predictions.csv").exists()  # a part writes its videos; the merge writes the tables
    records = [json.loads((parts / f"predict.part-000{i}-of-0002.json").read_text()) for i in range(2)]
    assert all(r["names"] for r in records) and sum(len(r["names"]) for r in records) == len(inputs)
    assert main(["predict", "--merge", "--out", str(parts)]) == 1
    whole = {p.relative_to(tmp_path / "whole"): p.read_bytes() for p in (tmp_path / "whole").rglob("*") if p.is_file()}
    merged = {p.relative_to(parts): p.read_bytes() for p in parts.rglob("*") if p.is_file() and ".part-" not in p.name}
    assert set(whole) >= {Path("predictions.csv"), Path("predictions.json"), Path("failed.txt")}
    assert whole == merged
    capsys.readouterr()
    # a part of another run's options is refused, naming what differs
    code, err = _predict([*inputs, "--run", runs["lp_app"], "--part", "1/2", "--out", parts], capsys)
    assert code == 2 and "other settings" in err and "per_clip" in err
    # a video's predictions lost after its part ran
    kept = parts / "videos" / f"{inputs[0].name}.json"
    lost = kept.with_suffix(".kept")
    kept.rename(lost)
    code, err = _predict(["--merge", "--out", parts], capsys)
    assert code == 2 and "1 outputs are missing" in err and inputs[0].name in err
    lost.rename(kept)
    # parts of other inputs, and an incomplete split
    assert _predict([*inputs[1:], "--run", runs["lp_app"], "--per-clip", "--part", "1/2", "--out", parts])[0] in (0, 1)
    code, err = _predict(["--merge", "--out", parts], capsys)
    assert code == 2 and "different inputs" in err
    (parts / "predict.part-0001-of-0002.json").unlink()
    code, err = _predict(["--merge", "--out", parts], capsys)
    assert code == 2 and "parts 1 of 2 are missing" in err and "predict.part-0001-of-0002.json" in err


@pytest.mark.parametrize("spoil", ["bias missing", "weight resized", "weight 1-D"])
def test_a_probe_head_that_does_not_fit_is_one_line(world, tmp_path, capsys, spoil):
    """predict and evaluate read a probe's head through the one state-dict check: one line naming the file."""
    from marlin.downstream.model import load_downstream_checkpoint, save_downstream_checkpoint

    root, runs = world
    (ckpt,) = runs["lp_bin"].rglob("head.safetensors")
    tensors, meta = load_downstream_checkpoint(ckpt)
    if spoil == "bias missing":
        del tensors["bias"]
        words = ["missing keys (1): bias"]
    elif spoil == "weight resized":
        tensors["weight"] = torch.zeros(tensors["weight"].shape[0], tensors["weight"].shape[1] + 1)
        words = ["weight"]
    else:
        tensors["weight"] = tensors["weight"].flatten()
        words = ["not a linear probe head"]
    bad = tmp_path / "run" / "head.safetensors"
    bad.parent.mkdir()
    save_downstream_checkpoint(bad, tensors, meta)
    for argv in (["predict", _test_items(root)[0], "--run", bad, "--out", tmp_path / "o"],
                 ["evaluate", bad, "--out", tmp_path / "e"]):
        code = main([*map(str, argv), "--no-progress"])
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and f"{bad}: " in lines[0], err
        assert all(w in lines[0] for w in words), lines[0]


def test_evaluation_and_the_feature_cache_take_clips_per_call(world, tmp_path, monkeypatch):
    """With no batch_size_eval, fine-tuning's evaluation and a probe's feature extraction hand the encoder
    `clips_per_call`'s count (here forced to one clip per call), not a fixed 8."""
    import marlin.extract
    from marlin.downstream.model import VideoClassifier

    root, runs = world
    monkeypatch.setattr(marlin.extract, "CPU_TOKENS_PER_CALL", 1)  # every clip fills a call on this CPU
    seen = []
    forward, extract = VideoClassifier.forward, Marlin.extract_features
    monkeypatch.setattr(VideoClassifier, "forward", lambda self, x: seen.append(len(x)) or forward(self, x))
    monkeypatch.setattr(Marlin, "extract_features", lambda self, x, **kw: seen.append(len(x)) or extract(self, x, **kw))
    (ckpt,) = runs["ft_expr"].rglob("*.safetensors")
    assert main(["evaluate", str(ckpt), "--no-progress", "--out", str(tmp_path / "eval")]) == 0
    assert seen and set(seen) == {1}  # 2 clips a video
    seen.clear()
    cfg = yaml.safe_load((root / "lp_bin.yaml").read_text())
    cfg["out"] = str(tmp_path / "lp")
    (tmp_path / "lp.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["probe", str(tmp_path / "lp.yaml"), "--no-progress"]) == 0
    assert seen and set(seen) == {1}
