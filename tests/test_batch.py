"""The batch commands' one loop (`marlin.batch.run_batch`): skip finished outputs, list failures, go on."""
from pathlib import Path

import pytest

from marlin.batch import FAILURES, run_batch
from marlin.cli import main


def test_failures_are_listed_and_the_run_goes_on(tmp_path, capsys):
    done = []

    def work(path, name):
        if name == "bad":
            raise ValueError(f"{path}: not a video")
        done.append(name)

    jobs = [(Path("a.mp4"), "a"), (Path("bad.mp4"), "bad"), (Path("c.mp4"), "c"), (Path("d.mp4"), "d")]
    result = run_batch(jobs, work, lambda name: name == "d", tmp_path, "test", progress=False)
    assert done == ["a", "c"] and (result.written, result.skipped) == (2, 1)
    assert result.failed == ["bad.mp4: not a video"]
    assert (tmp_path / FAILURES).read_text() == "bad.mp4: not a video\n"
    assert "Traceback" not in capsys.readouterr().err  # a bad input is not a bug
    assert result.report("test") == 1
    result = run_batch(jobs[:1], work, lambda name: False, tmp_path, "test", progress=False)
    assert not (tmp_path / FAILURES).exists() and result.report("test") == 0  # a clean rerun drops the list


def test_an_unexpected_error_shows_its_traceback_and_ctrl_c_ends_the_run(tmp_path, capsys):
    def work(path, name):
        raise KeyError("a bug")

    result = run_batch([(Path("a.mp4"), "a")], work, lambda name: False, tmp_path, "test", progress=False)
    assert result.failed == ["a.mp4: KeyError: 'a bug'"] and "Traceback" in capsys.readouterr().err

    def interrupted(path, name):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch([(Path("a.mp4"), "a")], interrupted, lambda name: False, tmp_path, "test", progress=False)


def test_debug_shows_the_traceback_of_a_bad_input(tmp_path, capsys):
    """`--debug` reaches the commands wherever it stands (it is popped from the command line before parsing)."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    for argv, traceback_shown in ((["extract", str(bad), "--out", str(tmp_path / "a")], False),
                                  (["extract", str(bad), "--out", str(tmp_path / "b"), "--debug"], True)):
        assert main(argv) == 1
        assert ("Traceback" in capsys.readouterr().err) == traceback_shown
