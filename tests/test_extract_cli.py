"""`marlin extract` on the command line: one output per input (name collisions), true counts, and errors a
user can act on (one line, exit code 2, no traceback)."""
import ast
import argparse
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from helpers import tiny_config
from marlin import Marlin
from marlin.cli import main
from marlin.video import write_video

CFG = tiny_config()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    Marlin(CFG, full_model=False).save(path)
    return path


def _video(path, seed, n=8):
    """A distinct tiny clip per seed, so that an output written from the wrong input shows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), fps=25)
    return path


def _extract(ckpt, out, *inputs, extra=()):
    return main(["extract", *map(str, inputs), "--checkpoint", str(ckpt), "--out", str(out), *extra])


def _assert_features_of(ckpt, out_file, video):
    model = Marlin.from_file(None, ckpt, full_model=False)
    assert np.allclose(np.load(out_file), model.extract_video(video).numpy(), atol=1e-6), out_file


def test_same_name_in_two_folders_given_as_files(ckpt, tmp_path, capsys):
    a, b = _video(tmp_path / "dirA" / "x.mp4", 1), _video(tmp_path / "dirB" / "x.mp4", 2)
    out = tmp_path / "out"
    assert _extract(ckpt, out, a, b) == 0
    assert "2 written, 0 already present, 0 failed" in capsys.readouterr().out
    _assert_features_of(ckpt, out / "dirA" / "x.npy", a)  # the tree below the common folder is mirrored
    _assert_features_of(ckpt, out / "dirB" / "x.npy", b)
    assert _extract(ckpt, out, a, b, extra=["--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "2 written, 0 already present" in captured.out and "extract:" in captured.err  # the progress bar
    assert _extract(ckpt, out, a, b, extra=["--overwrite", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "2 written, 0 already present" in captured.out and captured.err == ""


def test_same_stem_different_extension(ckpt, tmp_path, capsys):
    src = tmp_path / "videos"
    mov, mp4 = _video(src / "a.mov", 1), _video(src / "a.mp4", 2)
    _video(src / "b.mp4", 3)
    out = tmp_path / "out"
    assert _extract(ckpt, out, src) == 0
    assert "3 written, 0 already present, 0 failed" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "a_mp4.npy", "b.npy"]
    _assert_features_of(ckpt, out / "a.npy", mov)  # the first in name order keeps the plain name
    _assert_features_of(ckpt, out / "a_mp4.npy", mp4)
    assert _extract(ckpt, out, mp4, mov) == 0  # the same names whatever the order of the inputs
    assert "0 written, 2 already present" in capsys.readouterr().out


def test_item_folders_each_with_clip_mp4(ckpt, tmp_path, capsys):
    clips = [_video(tmp_path / "items" / name / "clip.mp4", i) for i, name in enumerate(["p1", "p2", "p3"])]
    out = tmp_path / "out"
    assert _extract(ckpt, out, *clips) == 0  # as a shell glob items/*/clip.mp4 gives them
    assert "3 written" in capsys.readouterr().out
    for clip in clips:
        _assert_features_of(ckpt, out / clip.parent.name / "clip.npy", clip)
    listing = tmp_path / "list.txt"  # a list of absolute paths: the same names
    listing.write_text("".join(f"{c}\n" for c in clips))
    assert _extract(ckpt, out, listing) == 0
    assert "0 written, 3 already present" in capsys.readouterr().out


def test_the_same_file_twice_is_one_input(ckpt, tmp_path, capsys):
    src = tmp_path / "videos"
    v = _video(src / "v.mp4", 1)
    assert _extract(ckpt, tmp_path / "out", src, v) == 0
    assert "1 written, 0 already present" in capsys.readouterr().out


def test_names_that_still_clash_are_refused(ckpt, tmp_path, capsys):
    src = tmp_path / "videos"
    for i, name in enumerate(["a.avi", "a.mp4", "a_mp4.mp4"]):  # a.mp4 -> a_mp4, as is a_mp4.mp4
        _video(src / name, i)
    assert _extract(ckpt, tmp_path / "out", src) == 2
    err = capsys.readouterr().err
    assert "a.mp4" in err and "a_mp4.mp4" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for n in needles:
        assert str(n) in err, err
    return err


def test_empty_input_folder_is_an_error(ckpt, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no videos here")
    assert _extract(ckpt, tmp_path / "out", tmp_path / "empty") == 2
    _one_line_error(capsys, tmp_path / "empty", "no video files")
    assert _extract(ckpt, tmp_path / "out", tmp_path / "missing") == 2
    _one_line_error(capsys, tmp_path / "missing", "does not exist")


def test_out_that_is_a_file_or_not_writable(ckpt, tmp_path, capsys):
    v = _video(tmp_path / "v.mp4", 1)
    file_out = tmp_path / "out.npy"
    file_out.write_text("")
    assert _extract(ckpt, file_out, v) == 2
    _one_line_error(capsys, file_out, "is a file")
    assert _extract(ckpt, file_out / "sub", v) == 2  # cannot be created below a file
    _one_line_error(capsys, file_out / "sub", "cannot write")


def test_bad_checkpoint_is_one_line(tmp_path, capsys):
    v = _video(tmp_path / "v.mp4", 1)
    bad = tmp_path / "weights.pt"
    bad.write_text("not a checkpoint")
    assert _extract(bad, tmp_path / "out", v) == 2
    _one_line_error(capsys, bad, "not a readable PyTorch checkpoint")


def test_bad_video_is_listed_and_the_run_goes_on(ckpt, tmp_path, capsys):
    src = tmp_path / "videos"
    good = _video(src / "good.mp4", 1)
    (src / "broken.mp4").write_text("garbage")
    out = tmp_path / "out"
    assert _extract(ckpt, out, src) == 1
    assert "1 written, 0 already present, 1 failed" in capsys.readouterr().out
    assert "broken.mp4" in (out / "failed.txt").read_text()
    _assert_features_of(ckpt, out / "good.npy", good)


def _parser_options(command: str) -> set[str]:
    import importlib

    p = argparse.ArgumentParser()
    importlib.import_module(f"marlin.cli.{command}").add_arguments(p)
    return {o for a in p._actions for o in a.option_strings}


def _options_named(path: Path) -> set[str]:
    """Every ``--option`` in the string literals of a module (messages and hints), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value))
    return found


# the modules whose messages reach the user of each command
PATHS = {
    "extract": ["cli/extract.py", "extract.py", "video/io.py", "face/__init__.py", "face/pipeline.py",
                "face/source.py", "face/crop.py", "face/tracker.py", "face/detector.py", "face/landmarks.py"],
    "preprocess": ["cli/preprocess.py", "face/preprocess.py", "face/layouts.py", "face/jobs.py", "video/io.py",
                   "face/pipeline.py", "face/source.py", "face/crop.py", "face/parse.py", "face/preview.py"],
}


@pytest.mark.parametrize("command", sorted(PATHS))
def test_hints_name_real_options(command):
    options = _parser_options(command) | {"--help"}
    for rel in PATHS[command]:
        unknown = _options_named(ROOT / "marlin" / rel) - options
        assert not unknown, f"marlin/{rel} names {sorted(unknown)}, which `marlin {command}` does not have"


def test_bad_device_and_numbers_end_the_run_at_once(ckpt, tmp_path, capsys):
    import torch

    v = _video(tmp_path / "v.mp4", 1)
    out = tmp_path / "out"
    assert _extract(ckpt, out, v, extra=["--device", "gpu0"]) == 2
    _one_line_error(capsys, "--device gpu0", "not a device")
    if not torch.cuda.is_available():
        assert _extract(ckpt, out, v, extra=["--device", "cuda"]) == 2  # was exit 4, "unexpected"
        _one_line_error(capsys, "--device cuda", "CUDA is not available")
    for option in ("--batch-size", "--stride", "--sample-rate"):  # were: every video failed
        with pytest.raises(SystemExit) as e:
            _extract(ckpt, out, v, extra=[option, "0"])
        assert e.value.code == 2 and f"argument {option}: expected a whole number >= 1" in capsys.readouterr().err
    assert not list(out.glob("*.npy"))


def test_crop_face_records_the_face_pipeline_and_refuses_an_older_one(ckpt, tmp_path, capsys):
    """A --crop-face folder's record names the detector, landmarks and crop rule; a folder made before they were
    recorded was cropped by the detector without its retry, so adding to it is refused with the difference."""
    import json

    from conftest import SAMPLES
    from marlin.extract import features_record, record_differences
    from marlin.face.pipeline import LEGACY_CROP_IDENTITY, crop_identity

    new = features_record({"weights_sha256": "ab"}, 2, 16, True)
    assert new["face"] == crop_identity() and "retry with margin" in new["face"]["detector"]
    assert "face" not in features_record({"weights_sha256": "ab"}, 2, 16, False)
    legacy = {k: v for k, v in new.items() if k != "face"}
    assert record_differences(legacy, new) == [
        f"face.detector: cached {LEGACY_CROP_IDENTITY['detector']!r}, needed {crop_identity()['detector']!r}"]
    assert record_differences(new, new) == []

    out = tmp_path / "out"
    video = SAMPLES / "cropped05.mp4"
    assert _extract(ckpt, out, video, extra=["--crop-face", "--no-progress"]) == 0
    record = json.loads((out / "features.json").read_text())
    assert record["face"] == crop_identity()
    record.pop("face")  # as a folder written before crops were recorded
    (out / "features.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert _extract(ckpt, out, video, extra=["--crop-face", "--overwrite", "--no-progress"]) == 2
    assert "face.detector: cached 'blazeface-full-range'" in capsys.readouterr().err
