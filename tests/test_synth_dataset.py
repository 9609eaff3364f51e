"""Synthetic dataset on disk: layout, label files, splits, resume, determinism across runs, CLI."""
import csv
import json
import os

import numpy as np
import pytest

from marlin.cli import main
from marlin.data import list_items, load_item
from marlin.synth import ACTION, APPEARANCE, EXPRESSION, generate_dataset, render_item, sample_labels
from marlin.video import count_frames, probe


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    paths = generate_dataset(out, 3, frames=8, size=64, seed=1, progress=False)
    return out, paths


def test_items_in_face_layout(world):
    out, paths = world
    assert [p.name for p in paths] == ["synth_000000", "synth_000001", "synth_000002"]
    items = list_items(out)
    assert len(items) == 3
    it = items[1]
    frames, parse, lms = it.read_frames(), it.read_parse(), it.read_landmarks()
    assert frames.shape == (8, 64, 64, 3) and parse.shape == (8, 64, 64) and lms.shape == (8, 68, 2)
    ref = render_item(1, 1, 8, 64)
    assert np.array_equal(parse, ref.parse)
    assert np.corrcoef(frames.ravel(), ref.frames.ravel())[0, 1] > 0.97  # H.264 is lossy, but close
    m = it.meta
    assert m["labels"] == {k: sample_labels(1, 1)[k] for k in ("appearance", "action", "expression", "manipulated")}
    assert len(m["boxes"]) == 8 and len(m["face_boxes"]) == 8 and all(m["face_found"])
    assert m["fps"] == 25.0 and m["size"] == 64


def test_label_files(world):
    out, _ = world
    info = json.loads((out / "celebvhq_info.json").read_text())
    assert info["meta_info"]["appearance_mapping"] == list(APPEARANCE)
    assert info["meta_info"]["action_mapping"] == list(ACTION)
    clip = info["clips"]["synth_000002"]["attributes"]
    lab = sample_labels(1, 2)
    assert clip["appearance"] == lab["appearance"] and clip["action"] == lab["action"]
    assert clip["emotion"]["labels"] == EXPRESSION[lab["expression"]]
    with open(out / "labels" / "appearance.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", *APPEARANCE] and rows[3] == ["synth_000002", *map(str, lab["appearance"])]
    with open(out / "labels" / "manipulated.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "label"] and rows[1][1] == str(sample_labels(1, 0)["manipulated"])
    for task in ("action", "expression"):
        assert (out / "labels" / f"{task}.csv").read_text().count("\n") == 4
    ids = sum(((out / f"{s}.txt").read_text().split() for s in ("train", "val", "test")), [])
    assert sorted(ids) == ["synth_000000", "synth_000001", "synth_000002"]


def test_resume_and_item_independent_of_num(world, tmp_path):
    out, _ = world
    before = {p: os.stat(p / "clip.mp4").st_mtime_ns for p in out.glob("synth_*")}
    paths = generate_dataset(out, 4, frames=8, size=64, seed=1, progress=False)
    assert len(paths) == 4
    assert all(os.stat(p / "clip.mp4").st_mtime_ns == t for p, t in before.items())  # kept, not redone
    other = generate_dataset(tmp_path, 4, frames=8, size=64, seed=1, progress=False, workers=2)
    for k in (0, 3):
        a, b = load_item(out / f"synth_{k:06d}"), load_item(other[k])
        assert np.array_equal(a.read_parse(), b.read_parse()) and a.meta == b.meta
        assert (a.root / "clip.mp4").read_bytes() == (b.root / "clip.mp4").read_bytes()
    assert (out / "train.txt").read_text().split() == (tmp_path / "train.txt").read_text().split()


def test_other_settings_in_same_directory_are_refused(world):
    out, _ = world
    with pytest.raises(ValueError, match="synth.json"):
        generate_dataset(out, 3, frames=8, size=96, seed=1, progress=False)


def test_bad_sizes_are_refused(tmp_path):
    for kw in ({"size": 63}, {"size": 16}, {"frames": 1}):
        with pytest.raises(ValueError, match="even size"):
            generate_dataset(tmp_path, 1, progress=False, **kw)


def test_corrupt_settings_file_is_named(tmp_path):
    (tmp_path / "synth.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"synth\.json: invalid JSON"):
        generate_dataset(tmp_path, 1, frames=4, size=48, progress=False)


def test_failing_item_is_reported_and_skipped(tmp_path, monkeypatch, capsys):
    import marlin.synth.dataset as ds

    real = ds.render_item

    def flaky(seed, k, *a, **kw):
        if k == 1:
            raise RuntimeError("boom")
        return real(seed, k, *a, **kw)

    monkeypatch.setattr(ds, "render_item", flaky)
    paths = generate_dataset(tmp_path, 3, frames=4, size=48, seed=2, progress=False)
    assert [p.name for p in paths] == ["synth_000000", "synth_000002"]
    assert "synth_000001" in capsys.readouterr().err and not (tmp_path / "synth_000001").exists()
    assert "synth_000001" not in (tmp_path / "labels" / "expression.csv").read_text()


def test_cli_with_raw_videos(tmp_path, capsys):
    rc = main(["synth", str(tmp_path / "w"), "--num", "2", "--frames", "6", "--size", "48", "--seed", "3",
               "--raw-videos", "--no-progress", "--preview", "1"])
    assert rc == 0
    png = tmp_path / "w" / "preview" / "synth_000000.png"
    import cv2

    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] >= 3 * 48  # frame, crop, parse overlay
    raw = tmp_path / "w" / "raw" / "synth_000001.mp4"
    info = probe(raw)
    assert (info.width, info.height) == (96, 72) and count_frames(raw) == 6
    it = load_item(tmp_path / "w" / "synth_000001")
    assert it.meta["source"] == "raw/synth_000001.mp4" and it.meta["source_size"] == [96, 72]
    x1, y1, x2, y2 = np.array(it.meta["boxes"]).T  # crop boxes lie mostly inside the raw frame
    assert ((x1 + x2) / 2 > 0).all() and ((x1 + x2) / 2 < 96).all() and ((y1 + y2) / 2 < 72).all()
    assert "2 clips" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "w"), "--num", "2", "--size", "64", "--no-progress"]) == 2
    assert main(["synth", "--out", str(tmp_path / "w"), "--num", "2", "--frames", "6", "--size", "48", "--seed", "3",
                 "--no-progress"]) == 0  # the option form; everything already there
    assert main(["synth", "--num", "2"]) == 2


def test_video_encoding_is_deterministic(tmp_path):
    # With libx264's macroblock tree on, encoding the same frames gave different bitstreams in about half of fresh
    # processes (up to 5 distinct files from 6 encodes of this clip); write_video turns it off, so a world
    # regenerated under the same seed is the same bytes. Fresh interpreters, because the failure depends on the
    # process.
    import subprocess
    import sys

    script = (
        "import hashlib, sys\n"
        "from pathlib import Path\n"
        "from marlin.synth.clip import render_item\n"
        "from marlin.synth.dataset import PRESET\n"
        "from marlin.video import write_video\n"
        "clip = render_item(0, 8, 32, 64, 25.0)\n"
        "out = Path(sys.argv[1])\n"
        "for i in range(6):\n"
        "    for preset in ('medium', PRESET):\n"
        "        write_video(out / f'{i}{preset}.mp4', clip.frames, fps=25.0, crf=clip.info['camera']['crf'],\n"
        "                    preset=preset)\n"
        "print(sorted({hashlib.md5(f.read_bytes()).hexdigest() for f in out.glob('*medium.mp4')}),\n"
        "      sorted({hashlib.md5(f.read_bytes()).hexdigest() for f in out.glob(f'*{PRESET}.mp4')}))\n")
    digests = set()
    for run in range(3):
        (tmp_path / str(run)).mkdir()
        res = subprocess.run([sys.executable, "-c", script, str(tmp_path / str(run))], capture_output=True,
                             text=True, check=True)
        digests.add(res.stdout.strip())
    assert len(digests) == 1 and digests.pop().count(",") == 0  # one file per preset, the same in every process


def test_synthetic_clips_use_the_fast_preset(tmp_path):
    # the synthetic clips are encoded with x264's fastest preset (no CABAC: its SEI options say cabac=0), which
    # made generating the demo's worlds faster; the world's version says so, so an older world is not resumed
    from marlin.synth import generate_dataset
    from marlin.synth.dataset import PRESET, VERSION

    (item,) = generate_dataset(tmp_path / "w", 1, frames=4, size=32, progress=False)
    assert PRESET == "ultrafast" and b"cabac=0" in (item / "clip.mp4").read_bytes()
    assert json.loads((tmp_path / "w" / "synth.json").read_text())["generator"] == f"marlin.synth/{VERSION}" != "marlin.synth/1"
