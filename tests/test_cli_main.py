"""The `marlin` command's central error handling (one line, documented exit codes, --debug) and the light
core install (model, checkpoints, extraction without any extra; a missing extra named in one line)."""
import subprocess
import sys
import textwrap

import pytest

from conftest import FIXTURES, ROOT, SAMPLES
from marlin import errors
from marlin.cli import COMMANDS, main

FAKE = '''
import sys


def add_arguments(p):
    p.add_argument("what")


def run(args):
    if args.what == "ok":
        return 0
    if args.what == "interrupt":
        raise KeyboardInterrupt
    if args.what == "value":
        raise ValueError("/data/x.yaml: unknown keys ['lr']")
    if args.what == "oserror":
        open("/nonexistent/dir/file.txt")
    if args.what == "cv2":
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")
    if args.what == "synth":  # raised for the synth extra, reported for the command's extra (face has cv2 too)
        from marlin.errors import missing_extra
        raise missing_extra(ModuleNotFoundError("No module named 'cv2'", name="cv2"), "synth", "the synthetic world")
    if args.what == "usage":
        raise SystemExit("give exactly one of --a or --b")
    if args.what == "multi":
        raise ValueError("x.pt: checkpoint does not fit the model\\n  missing keys (1): a")
    raise ZeroDivisionError("division by zero")
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A `marlin fake WHAT` command that raises what it is told (its extra: face)."""
    (tmp_path / "marlin_fake_cmd.py").write_text(FAKE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(COMMANDS, "fake", ("marlin_fake_cmd", "a test command", "face"))


@pytest.mark.parametrize("what, code, message", [
    ("ok", 0, None),
    ("interrupt", 130, "marlin fake: error: interrupted"),
    ("value", 2, "marlin fake: error: /data/x.yaml: unknown keys ['lr']"),
    ("oserror", 2, "marlin fake: error: /nonexistent/dir/file.txt: No such file or directory"),
    ("cv2", 3, "marlin fake: error: the 'face' extra is missing (cv2 is not installed): "
               "pip install 'facemarlin-toolkit[face]'"),
    ("synth", 3, "marlin fake: error: the synthetic world needs the 'face' extra (cv2 is not installed): "
                 "pip install 'facemarlin-toolkit[face]'"),
    ("usage", 2, "marlin fake: error: give exactly one of --a or --b"),
    ("bug", 4, "marlin fake: error: ZeroDivisionError: division by zero (unexpected; run with --debug for the "
               "traceback)"),
])
def test_one_line_and_exit_code(fake, capsys, what, code, message):
    assert main(["fake", what]) == code
    err = capsys.readouterr().err
    if message is None:
        assert err == ""
    else:
        assert err == message + "\n"  # exactly one line, no traceback


def test_multi_line_messages_keep_their_details(fake, capsys):
    assert main(["fake", "multi"]) == 2
    assert capsys.readouterr().err == "marlin fake: error: x.pt: checkpoint does not fit the model\n  missing keys (1): a\n"


@pytest.mark.parametrize("argv", [["--debug", "fake", "bug"], ["fake", "bug", "--debug"], ["fake", "--debug", "value"]])
def test_debug_shows_the_traceback_before_or_after_the_command(fake, capsys, argv):
    assert main(argv) in (2, 4)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and "marlin_fake_cmd.py" in err
    assert err.rstrip().splitlines()[-1].startswith("marlin fake: error: ")


def test_usage_errors_and_help(capsys):
    assert main(["nope"]) == 2
    assert "marlin: error: unknown command 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["extract"])  # argparse: missing arguments
    assert e.value.code == 2
    assert main(["--debug"]) == 0
    out = capsys.readouterr().out
    assert "--debug" in out and "exit codes:" in out


def test_bad_checkpoint_is_one_line_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert main(["extract", str(FIXTURES / "cropped01.mp4"), "--checkpoint", str(bad), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"marlin extract: error: {bad}: ") and err.count("\n") == 1


def test_require_names_the_extra():
    with pytest.raises(errors.MissingExtraError, match=r"the demo needs the 'demo' extra \(no_such_mod_xyz is not "
                                                       r"installed\): pip install 'facemarlin-toolkit\[demo\]'"):
        errors.require("no_such_mod_xyz", "demo", "the demo")
    with pytest.raises(ImportError):  # callers that fall back on ImportError keep working
        errors.require("no_such_mod_xyz", "demo")
    assert errors.require("json", "demo").dumps([1]) == "[1]"


BLOCKER = """
import importlib.abc, sys
HEAVY = {"cv2", "lightning", "pytorch_lightning", "lightning_fabric", "tensorboard", "torchmetrics", "h5py",
         "matplotlib", "ai_edge_litert", "mediapipe", "scipy", "sklearn", "PIL", "torchvision"}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocker())
"""


def test_core_works_without_any_extra(tmp_path):
    """With every optional package unimportable: import, load, extract (API and CLI) work; face, synth and
    training commands say which extra they need, in one line, with exit code 3."""
    script = BLOCKER + textwrap.dedent(f"""
        import io, contextlib
        import numpy as np
        from marlin import Marlin
        from marlin.cli import main

        F = {str(FIXTURES)!r}
        model = Marlin.from_file(F + "/tiny.yaml", F + "/tiny.encoder.pt")
        feats = model.extract_video(F + "/cropped01.mp4").numpy()
        assert np.abs(feats - np.load(F + "/cropped01.features.npy")).max() <= 1e-4
        model.save({str(tmp_path / "m.safetensors")!r})
        assert main(["extract", F + "/cropped01.mp4", "--checkpoint", {str(tmp_path / "m.safetensors")!r},
                     "--out", {str(tmp_path / "o")!r}]) == 0
        assert np.allclose(np.load({str(tmp_path / "o" / "cropped01.npy")!r}), feats, atol=1e-5)
        try:
            model.extract_video({str(SAMPLES / "video05.mp4")!r}, crop_face=True)
            raise AssertionError("no error")
        except ImportError as e:
            assert "pip install 'facemarlin-toolkit[face]'" in str(e), e
        for argv in (["extract", {str(SAMPLES / "video05.mp4")!r}, "--crop-face", "--out", {str(tmp_path / "o2")!r},
                      "--checkpoint", {str(tmp_path / "m.safetensors")!r}],
                     ["preprocess", {str(SAMPLES / "video05.mp4")!r}, {str(tmp_path / "o3")!r}],
                     ["synth", {str(tmp_path / "o4")!r}, "--num", "1"],
                     ["pretrain", "--config", "tiny_cpu", "--data", {str(tmp_path / "o4")!r}]):
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(argv)
            print("RESULT", code, err.getvalue().strip().splitlines()[-1])
        from marlin.cli import COMMANDS
        for name in COMMANDS:  # every command's help, whatever extra the command needs to run
            try:
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    main([name, "--help"])
                raise AssertionError("no exit")
            except SystemExit as e:
                assert e.code == 0 and out.getvalue().startswith(f"usage: marlin {{name}}"), (name, e.code)
        import marlin.downstream  # its names load on first use
        try:
            from marlin.downstream import compute_metrics  # noqa: F401
            raise AssertionError("no error")
        except ImportError as e:
            assert str(e) == ("downstream evaluation needs the 'downstream' extra (torchmetrics is not installed): "
                              "pip install 'facemarlin-toolkit[downstream]'"), e
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line[len("RESULT "):] for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines == [
        "3 marlin extract: error: the face pipeline needs the 'face' extra (cv2 is not installed): "
        "pip install 'facemarlin-toolkit[face]'",
        "3 marlin preprocess: error: the face pipeline needs the 'face' extra (cv2 is not installed): "
        "pip install 'facemarlin-toolkit[face]'",
        "3 marlin synth: error: the synthetic world needs the 'synth' extra (cv2 is not installed): "
        "pip install 'facemarlin-toolkit[synth]'",
        "3 marlin pretrain: error: pretraining needs the 'train' extra (lightning is not installed): "
        "pip install 'facemarlin-toolkit[train]'",
    ], lines


def test_no_usable_data_is_bad_input_not_a_bug():
    """`no usable video` (lipsync) and `no readable item left` (pretraining) were plain RuntimeErrors."""
    assert errors.classify(errors.NoUsableDataError("no usable video: a.mp4: broken"))[0] == errors.BAD_INPUT
    assert isinstance(errors.NoUsableDataError("x"), RuntimeError)
    assert errors.classify(RuntimeError("shape mismatch"))[0] == errors.INTERNAL


def test_every_command_that_shows_progress_takes_no_progress():
    """`--no-progress` everywhere (batch jobs' logs), one flag read as ``args.no_progress``; the commands that
    spelled it `--quiet` still take that."""
    import argparse
    import importlib

    quiet = {"demo", "ablate", "preprocess", "shard"}
    for name, (module, _, _) in COMMANDS.items():
        if name in ("convert", "gradcam"):  # one model or one clip: nothing to follow
            continue
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = [p for s in subs for n, p in s.choices.items() if n != "toy"] if subs else [parser]
        for p in parsers:
            flags = {s: a.dest for a in p._actions for s in a.option_strings}
            assert flags.get("--no-progress") == "no_progress", (name, p.prog)
            assert (flags.get("--quiet") == "no_progress") == (name in quiet), (name, p.prog)
