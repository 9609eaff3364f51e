"""Every face in a video (`--faces all`): a composite of the two real sample videos side by side, halves swapped at
a cut; the identity rule of marlin/face/tracks.py; per-track items and features; `--faces one` unchanged."""
import hashlib
import json

import numpy as np
import pytest

from helpers import tiny_config
from marlin import Marlin
from marlin.cli import main
from marlin.face.detector import iou
from marlin.video import read_frames, write_video

N = 12  # frames before and after the cut
H, W = 360, 800  # video01 (480x360) beside video05 (320x240), top-aligned
# where each source lies in the composite, (x, y) per half: before the cut video01 left, after it right
PLACE = {"a": [(0, 0)] * N + [(320, 0)] * N, "b": [(480, 0)] * N + [(0, 0)] * N}


@pytest.fixture(scope="module")
def composite(tmp_path_factory, samples_dir):
    """comp.mp4 (2N frames, a cut at N where the halves swap), and the source frames it shows as a.mp4 (video01
    frames 0..2N-1) and b.mp4 (video05 frames 10..2N+9, past its black opening and fade-in)."""
    root = tmp_path_factory.mktemp("composite")
    a = read_frames(samples_dir / "video01.mp4", list(range(2 * N)))
    b = read_frames(samples_dir / "video05.mp4", list(range(10, 10 + 2 * N)))
    frames = np.zeros((2 * N, H, W, 3), np.uint8)
    for t in range(2 * N):
        for src, name in ((a, "a"), (b, "b")):
            x, y = PLACE[name][t]
            frames[t, y:y + src.shape[1], x:x + src.shape[2]] = src[t]
    (root / "in").mkdir()
    write_video(root / "in" / "comp.mp4", frames, fps=30)
    write_video(root / "a.mp4", a, fps=30)
    write_video(root / "b.mp4", b, fps=30)
    return root


@pytest.fixture(scope="module")
def single(composite):
    """The one-face pipeline's boxes (T, 4) on each source."""
    from marlin.face import FacePipeline

    pipe = FacePipeline(parser=None)
    return {k: pipe.run(composite / f"{k}.mp4").boxes for k in ("a", "b")}


@pytest.fixture(scope="module")
def preprocessed(composite):
    out = composite / "out"
    rc = main(["preprocess", str(composite / "in"), str(out), "--faces", "all", "--parser", "none", "--quiet",
               "--threads", "1"])
    assert rc == 0
    return out


def test_tracks_keep_identity_through_the_swap(preprocessed, single):
    # the documented rule: after the cut the position says nothing, appearance decides, and each face is the
    # same person as before it -> 2 tracks over all 2N frames, not 4; face0 starts leftmost (video01)
    index = json.loads((preprocessed / "comp" / "faces.json").read_text())
    assert [f["item"] for f in index["faces"]] == ["face0", "face1"]
    for k, src in enumerate(("a", "b")):
        meta = json.loads((preprocessed / "comp" / f"face{k}" / "meta.json").read_text())
        assert meta["track"] == k and meta["frame_range"] == [0, 2 * N - 1] and meta["num_frames"] == 2 * N
        assert meta["scene_cuts"] == [N] and meta["faces"] == "all" and all(meta["face_found"])
        shift = np.array([[x, y, x, y] for x, y in PLACE[src]], np.float64)
        overlap = iou(np.array(meta["boxes"]), single[src] + shift)
        assert overlap.min() >= 0.9, (src, overlap.round(3))
    summary = json.loads((preprocessed / "preprocess_summary.json").read_text())
    assert summary["face_tracks"] == 2 and summary["options"]["faces"] == "all"


def test_an_item_holds_only_its_track_frames(composite):
    # video05 alone after the cut: its track starts at the cut, and its item holds frames N.. only
    from marlin.face import face_tracks

    path = composite / "late.mp4"
    write_video(path, np.concatenate([np.zeros((N, 240, 320, 3), np.uint8), read_frames(composite / "b.mp4")[:N]]),
                fps=30)
    (clip,) = face_tracks(path, size=64, min_track_frames=8)
    assert clip.meta["frame_range"] == [N, 2 * N - 1] and clip.frames.shape == (N, 64, 64, 3)
    assert len(clip.meta["boxes"]) == N and clip.found.all()


def test_face_track_clips_api(composite):
    from marlin.extract import face_track_clips

    tracks = face_track_clips(composite / "in" / "comp.mp4", size=32)
    assert [name for name, _ in tracks] == ["face0", "face1"]
    for _, clips in tracks:
        clips = list(clips)  # 24 frames: one window of the first 16
        assert len(clips) == 1 and clips[0].shape == (16, 32, 32, 3) and clips[0].dtype == np.uint8


def test_short_tracks_and_no_face_are_reported(composite, tmp_path, capsys):
    from marlin.extract import face_track_clips
    from marlin.face import NoFaceError

    blank = tmp_path / "in" / "blank.mp4"
    blank.parent.mkdir()
    write_video(blank, np.full((8, 64, 64, 3), 90, np.uint8), fps=25)
    with pytest.raises(NoFaceError, match="blank.mp4"):
        face_track_clips(blank)
    with pytest.raises(NoFaceError, match=r"comp.mp4.*at least 30 frames"):
        face_track_clips(composite / "in" / "comp.mp4", min_track_frames=30)
    out = tmp_path / "out"
    assert main(["preprocess", str(blank.parent), str(out), "--faces", "all", "--parser", "none", "--quiet"]) == 1
    assert "blank.mp4" in (out / "failures.log").read_text() and not (out / "blank").exists()
    capsys.readouterr()
    assert main(["preprocess", str(blank.parent), str(tmp_path / "o2"), "--faces", "all", "--no-face", "center"]) == 2
    assert capsys.readouterr().err.count("error:") == 1


def test_extract_faces_all(composite, tmp_path, capsys):
    ckpt = tmp_path / "tiny.safetensors"
    Marlin(tiny_config(), full_model=False).save(ckpt)
    video, out = composite / "in" / "comp.mp4", tmp_path / "feat"
    args = ["extract", str(video), "--checkpoint", str(ckpt), "--out", str(out)]
    assert main(args + ["--faces", "all"]) == 2  # needs --crop-face
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["marlin extract: error: --faces all needs --crop-face (the face tracks come "
                                        "from the face pipeline)"]
    assert main(args + ["--crop-face", "--faces", "all"]) == 0
    assert sorted(p.name for p in (out / "comp").iterdir()) == ["face0.npy", "face1.npy"]
    assert json.loads((out / "features.json").read_text())["faces"] == "all"
    assert np.load(out / "comp" / "face0.npy").shape == (1, tiny_config().encoder_embed_dim)
    assert main(args + ["--crop-face"]) == 2  # a --faces one run into a --faces all folder
    assert "faces: cached 'all', needed 'one'" in capsys.readouterr().err


# --faces one: digests of the items `marlin preprocess` wrote from the sample videos before --faces existed
# (commit a9a3bf0), with the tested library builds of scripts/constraints.txt (the crops, parse maps and landmarks
# depend on OpenCV's build; meta.json records the versions): clip.mp4 bytes, the parse / landmarks arrays (npz
# files carry a time stamp), meta.json without its "source" path. meta.json's digests were renewed when the
# detector's record named its retry with a margin (the frames of these videos all gave a face or none without it,
# so the other files kept their digests)
BEFORE = {
    "video01": {"clip.mp4": "68fa072dce5689cb2a94dc58ace7c21f674cf6b19948b6488045431654c2b5a8",
                "parse.npz": "87a092436311a99740c5c1efc28757b427d667ca6b770571de7fabcc3da3ba47",
                "landmarks.npz": "95a9729a2b96ee217ebe785f6ed80aa1e0aece60d1528a8f3c81c2f98b033d6a",
                "meta.json": "6213e8dc48ccbe48dd921a57f088cb31391bf85c83cef434217826a1dfdc05d2"},
    "video05": {"clip.mp4": "03f05e4b7873107c9ff90128d16f11d9e1b90f6d2f602cd4afc92bf4c697c3d4",
                "parse.npz": "81e1534b5d92d8fc82b5f5ea429382fe3620ec9002d60fc23e3ebb50e5c86d35",
                "landmarks.npz": "dad7aba710af5fa28d1b79c00a5bcd59efba69ff61f936428e9fdc3dd1d5b5ca",
                "meta.json": "e9fd637092945ec514810ca090d2565eebd1a04afda38041d0a2a9711344aeb6"},
}
RECORD_BEFORE = {"layout": "videos", "options": {"size": 224, "parser": "landmarks", "no_face": "error",
                                                 "as_jpg": False, "fps": 25.0, "allow_truncated": False,
                                                 "seg_every": 1}}


def _digests(item) -> dict:
    out = {"clip.mp4": hashlib.sha256((item / "clip.mp4").read_bytes()).hexdigest()}
    for name, key in (("parse.npz", "parse"), ("landmarks.npz", "landmarks")):
        with np.load(item / name) as z:
            a = z[key]
        out[name] = hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()
    meta = json.loads((item / "meta.json").read_text())
    meta.pop("source")
    out["meta.json"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()
    return out


def test_faces_one_is_unchanged_on_the_samples(samples_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in BEFORE:
        (inputs / f"{name}.mp4").symlink_to(samples_dir / f"{name}.mp4")
    out = tmp_path / "out"
    assert main(["preprocess", str(inputs), str(out), "--quiet", "--threads", "1"]) == 0
    assert {name: _digests(out / name) for name in BEFORE} == BEFORE
    assert (out / "preprocess.json").read_text() == json.dumps(RECORD_BEFORE, indent=1) + "\n"
