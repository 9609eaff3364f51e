"""`marlin preprocess --part i/N` and `--merge`: a stable, complete partition; parts + merge == one whole run."""
import json

import numpy as np
import pytest

from marlin.cli import main
from marlin.data.layout import list_items
from marlin.face.preprocess import RECORD, SUMMARY, part_files, part_of
from marlin.video import write_video

FAST = ["--size", "32", "--parser", "none", "--no-face", "center", "--quiet"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Seven tiny face-less videos in two folders (centre-cropped: no model beyond the detector runs)."""
    d = tmp_path_factory.mktemp("videos")
    for i in range(7):
        sub = d / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        write_video(sub / f"v{i}.mp4", np.full((3, 24, 32, 3), 20 * i, np.uint8), fps=5)
    return d


def test_partition_is_stable_and_complete():
    names = [f"person{i}/clip{j}" for i in range(40) for j in range(5)]
    parts = {n: part_of(n, 7) for n in names}
    assert parts == {n: part_of(n, 7) for n in reversed(names)}  # listing order does not matter
    assert part_of("person0/clip0", 7) == 3  # a fixed hash (sha256), the same on every machine and Python run
    counts = np.bincount(list(parts.values()), minlength=7)
    assert counts.sum() == len(names) and counts.min() > 10  # every input in exactly one part, parts balanced


def test_two_parts_and_merge_equal_one_run(videos, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["preprocess", str(videos), str(whole), *FAST]) == 0
    assert main(["preprocess", str(split), "--merge"]) == 2  # nothing to merge yet
    assert main(["preprocess", str(videos), str(split), "--part", "1/2", *FAST]) == 0
    one = {it.name for it in list_items(split)}
    assert one and one == {n for n in (it.name for it in list_items(whole)) if part_of(n, 2) == 1}
    assert main(["preprocess", str(split), "--merge"]) == 2  # part 0 is missing
    assert not (split / SUMMARY).exists()
    assert main(["preprocess", str(videos), str(split), "--part", "0/2", *FAST]) == 0
    assert main(["preprocess", str(videos), str(split), "--part", "0/2", *FAST]) == 0  # a part resumes alone
    s0 = json.loads((split / part_files((0, 2))[0]).read_text())
    assert s0["skipped_finished"] == s0["total"] and s0["done"] == 0
    assert main(["preprocess", str(split), "--merge"]) == 0
    assert [it.name for it in list_items(split)] == [it.name for it in list_items(whole)]
    merged, ref = (json.loads((d / SUMMARY).read_text()) for d in (split, whole))
    assert merged["parts"] == 2 and merged["total"] == ref["total"] == 7
    assert merged["done"] + merged["skipped_finished"] == ref["done"] and merged["failed"] == 0
    assert merged["inputs_digest"] == ref["inputs_digest"] and merged["options"] == ref["options"]
    for a, b in zip(list_items(split), list_items(whole)):
        assert np.array_equal(a.read_frames(), b.read_frames())


def test_merge_refuses_parts_with_other_options(videos, tmp_path, capsys):
    """Parts made on machines without a shared folder, with different options, then copied together."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert main(["preprocess", str(videos), str(out), "--part", "0/2", *FAST]) == 0
    assert main(["preprocess", str(videos), str(elsewhere), "--part", "1/2", *FAST, "--fps", "30"]) == 0
    name = part_files((1, 2))[0]
    (out / name).write_text((elsewhere / name).read_text())
    capsys.readouterr()
    assert main(["preprocess", str(out), "--merge"]) == 2
    assert "options.fps" in capsys.readouterr().err
    assert main(["preprocess", str(videos), str(out), "--part", "2/2", *FAST]) == 2  # i must be < N


def test_a_run_into_a_folder_made_with_other_options_is_refused(videos, tmp_path, capsys):
    """Finished items are skipped on resume: with other options the folder would silently mix two kinds."""
    out = tmp_path / "out"
    assert main(["preprocess", str(videos), str(out), "--part", "0/2", *FAST]) == 0
    capsys.readouterr()
    assert main(["preprocess", str(videos), str(out), "--part", "1/2", *FAST, "--fps", "30"]) == 2
    err = capsys.readouterr().err
    assert "options.fps: 25.0 there, 30.0 now" in err and str(out) in err
    assert main(["preprocess", str(videos), str(out), "--size", "48", *FAST[2:]]) == 2  # another size
    assert "options.size: 32 there, 48 now" in capsys.readouterr().err
    assert main(["preprocess", str(videos), str(out), "--part", "1/2", *FAST]) == 0  # the same options: fine
    # a folder from before the record: its whole-run summary says what the items were made with
    (out / RECORD).unlink()
    (out / SUMMARY).write_text(json.dumps({"layout": "videos", "options": {"size": 32, "parser": None,
                                                                           "no_face": "center", "fps": 30.0}}))
    assert main(["preprocess", str(videos), str(out), *FAST]) == 2
    assert "options.fps: 30.0 there, 25.0 now" in capsys.readouterr().err
