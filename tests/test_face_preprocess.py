"""`marlin preprocess`: layouts, item format, resume, failures, previews, workers."""
import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from conftest import SAMPLES
from marlin.cli import main
from marlin.data.layout import list_items, load_item
from marlin.face.preprocess import FAILURES, SUMMARY
from marlin.video import read_frames, write_video


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory):
    """16 frames of video01 (a face) and 10 of video05 (with its 4 black frames), as small videos."""
    d = tmp_path_factory.mktemp("videos")
    (d / "a").mkdir()
    write_video(d / "a" / "talk.mp4", read_frames(SAMPLES / "video01.mp4", range(0, 80, 5)), fps=6)
    write_video(d / "fade.mp4", read_frames(SAMPLES / "video05.mp4", range(10)), fps=30)
    (d / "broken.mp4").write_bytes((SAMPLES / "video01.mp4").read_bytes()[:3000])
    return d


def test_videos_layout_resume_failures_previews(short_clip, tmp_path):
    out = tmp_path / "out"
    rc = main(["preprocess", str(short_clip), str(out), "--size", "96", "--preview", "5", "--quiet"])
    assert rc == 1  # one input failed, the others finished
    items = {it.name: it for it in list_items(out)}
    assert set(items) == {"a/talk", "fade"}
    talk = items["a/talk"]
    assert talk.root == out / "a" / "talk"
    frames, parse, lms = talk.read_frames(), talk.read_parse(), talk.read_landmarks()
    assert frames.shape == (16, 96, 96, 3) and parse.shape == (16, 96, 96) and lms.shape == (16, 468, 2)
    m = talk.meta
    assert m["num_frames"] == 16 and m["size"] == 96 and len(m["boxes"]) == 16 and all(m["face_found"])
    assert abs(m["fps"] - 6) < 0.01 and "detector" in m["backends"]
    fade = items["fade"].meta
    assert fade["face_found"][:4] == [False] * 4 and any(fade["face_found"])
    log = (out / FAILURES).read_text()
    assert "broken.mp4" in log and log.count("\n") == 1
    summary = json.loads((out / SUMMARY).read_text())
    assert (summary["done"], summary["failed"]) == (2, 1)
    pngs = sorted((out / "previews").glob("*.png"))
    assert len(pngs) == 2 and cv2.imread(str(pngs[0])).shape[1] >= 3 * 96
    # resume: finished items are skipped and untouched; a half-written temporary does not count
    stamp = (talk.root / "meta.json").stat().st_mtime_ns
    shutil.rmtree(items["fade"].root)
    (out / ".fade.tmp999").mkdir()
    assert main(["preprocess", str(short_clip), str(out), "--size", "96", "--quiet"]) == 1
    summary = json.loads((out / SUMMARY).read_text())
    assert (summary["skipped_finished"], summary["done"], summary["failed"]) == (1, 1, 1)
    assert (talk.root / "meta.json").stat().st_mtime_ns == stamp
    assert load_item(out / "fade").num_frames == 10


def test_no_face_skipped_or_centre(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_video(src / "wall.mp4", np.full((5, 40, 60, 3), 120, np.uint8), fps=5)
    out = tmp_path / "out"
    assert main(["preprocess", str(src), str(out), "--size", "32", "--quiet"]) == 1
    assert "wall.mp4" in (out / FAILURES).read_text() and "no face" in (out / FAILURES).read_text()
    assert not list_items(out)
    assert main(["preprocess", str(src), str(out), "--size", "32", "--quiet", "--no-face", "center"]) == 0
    item = load_item(out / "wall")
    assert item.meta["no_face_fallback"] == "center" and not any(item.meta["face_found"])
    assert item.meta["boxes"][0] == [10.0, 0.0, 50.0, 40.0]


def test_ytf_layout_grayscale_frames_and_splits(tmp_path):
    root = tmp_path / "ytf"
    clip = root / "frame_images_DB" / "Some_One" / "3"
    clip.mkdir(parents=True)
    for i, f in enumerate(read_frames(SAMPLES / "video01.mp4", range(0, 24, 3))):
        small = cv2.resize(f, (241, 181))  # odd frame size
        cv2.imwrite(str(clip / f"3.{i}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))  # grayscale JPEGs
    (root / "train_set.csv").write_text("path,len\nSome_One/3,99\nOther/0,50\n")
    (root / "val_set.csv").write_text("path,len\n")
    out = tmp_path / "out"
    assert main(["preprocess", str(root), str(out), "--layout", "ytf", "--size", "64", "--quiet"]) == 0
    item = load_item(out / "Some_One" / "3")
    assert len(list((item.root / "frames").glob("*.jpg"))) == 8
    assert item.read_frames().shape == (8, 64, 64, 3) and all(item.meta["face_found"])
    assert item.meta["source_size"] == [241, 181]
    with open(out / "train_set.csv") as f:
        assert list(csv.reader(f)) == [["path", "len"], ["Some_One/3", "8"]]
    assert (out / "val_set.csv").read_text().strip() == "path,len"


def test_celebvhq_layout_with_two_workers(short_clip, tmp_path):
    root = tmp_path / "celebvhq"
    (root / "downloaded").mkdir(parents=True)
    shutil.copy(short_clip / "a" / "talk.mp4", root / "downloaded" / "clipA.mp4")
    shutil.copy(short_clip / "fade.mp4", root / "downloaded" / "clipB.mp4")
    out = tmp_path / "out"
    assert main(["preprocess", str(root), str(out), "--layout", "celebvhq", "--size", "64",
                 "--workers", "2", "--parser", "none", "--quiet"]) == 0
    assert sorted(it.name for it in list_items(out)) == ["clipA", "clipB"]
    assert not load_item(out / "clipA").has_parse()


def test_missing_input_is_a_clear_error(tmp_path, capsys):
    assert main(["preprocess", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """video01 re-encoded short with faststart (the frame count sits before the data) and cut in half: the
    container declares 60 frames, fewer decode, without a decoding error."""
    d = tmp_path_factory.mktemp("cut")
    whole = d / "whole.mp4"
    write_video(whole, read_frames(SAMPLES / "video01.mp4", range(60)), fps=30)
    cut = d / "videos" / "cut.mp4"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    decoded = len(read_frames(cut))
    assert 0 < decoded < 60
    return cut, decoded


def test_truncated_video_fails_unless_allowed(truncated, tmp_path, capsys):
    cut, decoded = truncated
    out = tmp_path / "out"
    assert main(["preprocess", str(cut.parent), str(out), "--size", "64", "--parser", "none", "--quiet"]) == 1
    log = (out / FAILURES).read_text()
    assert "cut.mp4" in log and f"after {decoded} frames" in log and "declares 60" in log
    assert not list_items(out)  # not a finished item: a rerun tries again
    assert main(["preprocess", str(cut.parent), str(out), "--size", "64", "--parser", "none", "--quiet",
                 "--allow-truncated"]) == 0
    assert "truncated" in capsys.readouterr().err
    m = load_item(out / "cut").meta
    assert (m["truncated"], m["frames_declared"], m["frames_decoded"], m["num_frames"]) == (True, 60, decoded, decoded)
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["truncated_kept"] == ["cut"]


def test_item_an_older_version_made_from_a_truncated_video_is_redone(truncated, tmp_path):
    cut, decoded = truncated
    out = tmp_path / "out"
    args = ["preprocess", str(cut.parent), str(out), "--size", "64", "--parser", "none", "--quiet"]
    assert main([*args, "--allow-truncated"]) == 0
    meta = json.loads((out / "cut" / "meta.json").read_text())
    for key in ("truncated", "frames_declared", "frames_decoded"):  # as the versions before them wrote it
        del meta[key]
    (out / "cut" / "meta.json").write_text(json.dumps(meta))
    assert main(args) == 1  # the stale item is removed and the video reported
    assert not list_items(out) and "truncated" in (out / FAILURES).read_text()


def test_complete_video_meta_has_both_counts(short_clip, tmp_path):
    out = tmp_path / "out"
    src = short_clip / "a"
    assert main(["preprocess", str(src), str(out), "--size", "64", "--parser", "none", "--quiet"]) == 0
    m = load_item(out / "talk").meta
    assert (m["truncated"], m["frames_declared"], m["frames_decoded"]) == (False, 16, 16)


def test_extract_crop_face_fails_a_truncated_video(truncated, tmp_path, fixtures_dir, capsys):
    cut, decoded = truncated
    out = tmp_path / "feats"
    assert main(["extract", str(cut), "--crop-face", "--model", str(fixtures_dir / "tiny.yaml"),
                 "--checkpoint", str(fixtures_dir / "tiny.encoder.pt"), "--out", str(out)]) == 1
    assert not (out / "cut.npy").exists()
    assert f"after {decoded} frames" in (out / "failed.txt").read_text()


def test_extract_crop_face_no_face_hint(tmp_path, fixtures_dir):
    """The no-face failure of `extract --crop-face` names no option that `extract` lacks (it had --no-face)."""
    wall = tmp_path / "wall.mp4"
    write_video(wall, np.full((5, 40, 60, 3), 120, np.uint8), fps=5)
    out = tmp_path / "feats"
    assert main(["extract", str(wall), "--crop-face", "--model", str(fixtures_dir / "tiny.yaml"),
                 "--checkpoint", str(fixtures_dir / "tiny.encoder.pt"), "--out", str(out)]) == 1
    log = (out / "failed.txt").read_text()
    assert "wall.mp4" in log and "no face" in log and "--" not in log


def test_empty_input_folder_and_bad_out(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["preprocess", str(tmp_path / "empty"), str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "no video files" in err and "Traceback" not in err
    (tmp_path / "celebvhq").mkdir()
    assert main(["preprocess", str(tmp_path / "celebvhq"), str(tmp_path / "out"), "--layout", "celebvhq"]) == 2
    assert "no inputs" in capsys.readouterr().err
    write_video(tmp_path / "src" / "v.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    (tmp_path / "file").write_text("")
    assert main(["preprocess", str(tmp_path / "src"), str(tmp_path / "file"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "file" in err and "is a file" in err and "Traceback" not in err


def test_bad_parser_file_is_one_error_before_any_worker(short_clip, tmp_path, capsys):
    bad = tmp_path / "parser.pt"
    bad.write_text("not a model")
    out = tmp_path / "out"
    assert main(["preprocess", str(short_clip), str(out), "--parser", str(bad), "--workers", "2",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "not a TorchScript" in err and len(err.splitlines()) == 1, err
    assert not (out / FAILURES).exists()


def test_bad_size_is_one_error_before_any_worker(short_clip, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["preprocess", str(short_clip), str(out), "--size", "8", "--workers", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "crop size 8 is too small" in err and len(err.splitlines()) == 1, err
    assert not (out / FAILURES).exists()


def test_out_inside_input_is_not_read_back(short_clip, tmp_path):
    src = tmp_path / "videos"
    shutil.copytree(short_clip / "a", src)
    out = src / "faces"
    args = ["preprocess", str(src), str(out), "--size", "32", "--parser", "none", "--quiet"]
    assert main(args) == 0
    assert main(args) == 0  # the items' own clip.mp4 are not taken for new inputs
    assert [it.name for it in list_items(out)] == ["talk"]
    assert json.loads((out / SUMMARY).read_text())["total"] == 1
