"""Face pipeline on the real sample videos: detection rate, box IoU vs the official crops, smoothness, parsing."""
import json

import numpy as np
import pytest

from conftest import SAMPLES
from marlin.face import FacePipeline
from marlin.face.detector import iou


@pytest.fixture(scope="module")
def pipe():
    return FacePipeline(size=224)


@pytest.fixture(scope="module")
def clips(pipe):
    return {v: pipe.run(SAMPLES / f"{v}.mp4") for v in ("video01", "video05")}


def _official(video):
    entries = [e for e in json.loads((SAMPLES / f"{video}.official_boxes.json").read_text()) if e["j"] >= 0]
    j = np.array([e["j"] for e in entries])
    b = np.array([[e["cx"] - e["side"] / 2, e["cy"] - e["side"] / 2, e["cx"] + e["side"] / 2, e["cy"] + e["side"] / 2]
                  for e in entries])
    return j, b


def test_shapes_and_meta(clips):
    c = clips["video01"]
    assert c.frames.shape == (300, 224, 224, 3) and c.frames.dtype == np.uint8
    assert c.parse.shape == (300, 224, 224) and c.parse.dtype == np.uint8 and c.parse.max() <= 10
    assert c.landmarks.shape == (300, 468, 2)
    assert len(c.meta["boxes"]) == 300 and len(c.meta["face_found"]) == 300
    assert abs(c.fps - 30) < 0.1
    for key in ("decoder", "detector", "landmarks", "parser", "crop"):
        assert key in c.meta["backends"]


def test_detection_rate(clips):
    # video01: every frame shows the face; video05: 4 black frames, then a fade-in
    assert clips["video01"].found.mean() >= 0.95
    assert clips["video05"].found[4:].mean() >= 0.95
    assert not clips["video05"].found[:4].any()


def test_box_matches_official(clips):
    for v in ("video01", "video05"):
        j, off = _official(v)
        c = clips[v]
        ok = c.found[j]
        assert ok.mean() > 0.9
        assert np.median(iou(c.boxes[j[ok]], off[ok])) >= 0.85, v


def test_crop_is_smooth(clips):
    for v in ("video01", "video05"):
        c = clips[v]
        b = c.boxes[c.found]
        centre, side = (b[:, :2] + b[:, 2:]) / 2, b[:, 2] - b[:, 0]
        move = np.linalg.norm(np.diff(centre, axis=0), axis=1) / side[1:]
        assert move.mean() < 0.005, (v, move.mean())


def test_held_box_where_no_face(clips):
    c = clips["video05"]
    first = int(np.argmax(c.found))
    assert np.allclose(c.boxes[:first], c.boxes[first], atol=2.0)  # leading black frames hold the first box
    assert np.isnan(c.landmarks[:first]).all() and (c.parse[:first] == 0).all()
    assert np.isfinite(c.landmarks[c.found]).all()


def test_landmarks_in_crop_pixels(clips):
    lm = clips["video01"].landmarks
    assert lm.min() > -0.1 * 224 and lm.max() < 1.1 * 224  # the official crop may cut the chin a little
    nose = lm[:, 1]  # nose tip sits near the crop centre, slightly low (the box is shifted up)
    assert np.abs(nose[:, 0] - 112).max() < 25 and 0 < np.median(nose[:, 1]) - 112 < 40


def test_parse_frontal_frame(clips):
    p = clips["video01"].parse[0]
    area = np.bincount(p.ravel(), minlength=11) / p.size
    for cls in (1, 2, 3, 4, 5, 6, 7, 9):  # skin, brows, eyes, nose, lips
        assert area[cls] > 0, cls
    assert 0.3 < area[1] < 0.9  # skin
    assert 0.002 < area[4] < 0.03 and 0.002 < area[5] < 0.03  # eyes
    assert 0.01 < area[6] < 0.08  # nose
    assert 0.003 < area[7] < 0.04 and 0.003 < area[9] < 0.04  # lips
    assert area[0] + area[10] > 0.03  # background and hair around the face
    ys, xs = np.indices(p.shape)
    cx = lambda k: xs[p == k].mean()  # noqa: E731
    assert cx(4) < cx(5) and cx(2) < cx(3)  # LaPa "left" = image left
    assert ys[p == 2].mean() < ys[p == 4].mean() < ys[p == 6].mean() < ys[p == 7].mean() < ys[p == 9].mean()


def test_open_mouth_has_inner_mouth(clips):
    # video05: the speaker smiles with an open mouth through most of the clip
    assert ((clips["video05"].parse == 8).sum(axis=(1, 2)) > 0).mean() > 0.5


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """Edited real footage: a face that vanishes for 5 frames, a cut to another shot, two people side by side."""
    from marlin.video import read_frames, write_video

    d = tmp_path_factory.mktemp("edited")
    a = read_frames(SAMPLES / "video01.mp4", range(0, 60, 3))  # (20, 360, 480, 3)
    b = read_frames(SAMPLES / "video05.mp4", range(40, 80, 4))  # (10, 240, 320, 3)
    b = np.stack([np.pad(f, ((60, 60), (80, 80), (0, 0))) for f in b])  # same frame size as a
    gap = a.copy()
    gap[8:13] = 0
    write_video(d / "gap.mp4", np.concatenate([gap, b]), fps=10)
    two = np.concatenate([a[:6], b[:6]], 2)  # (6, 360, 960, 3): big face left, smaller face right
    write_video(d / "two.mp4", two, fps=10)
    return d


def test_vanishing_face_and_scene_cut(pipe, edited):
    c = pipe.run(edited / "gap.mp4")
    assert not c.found[8:13].any() and c.found[:8].all() and c.found[20:].mean() > 0.9
    assert np.allclose(c.boxes[8:13], c.boxes[7], atol=1.5)  # box held while the face is gone
    assert 20 in c.meta["scene_cuts"]
    centre = (c.boxes[:, :2] + c.boxes[:, 2:]) / 2
    assert np.abs(centre[19] - centre[18]).max() < 3 and np.abs(centre[20] - centre[19]).max() > 20  # no blending


def test_two_people_follows_largest(pipe, edited):
    c = pipe.run(edited / "two.mp4")
    centre_x = (c.boxes[:, 0] + c.boxes[:, 2]) / 2
    assert c.found.all() and (centre_x < 480).all()  # the larger face, in the left half, every frame


def test_large_input_and_second_decoding_pass(edited, tmp_path):
    """A 1920x1440 input (face about 480 px: area-averaged crop) gives the same crops whether the
    frames are kept in memory between the passes or decoded again."""
    import cv2

    from marlin.video import read_frames, write_video

    big = np.stack([cv2.resize(f, (1920, 1440)) for f in read_frames(SAMPLES / "video01.mp4", [0, 10, 20])])
    write_video(tmp_path / "big.mp4", big, fps=10)
    cached = FacePipeline(size=64, parser=None).run(tmp_path / "big.mp4")
    redecoded = FacePipeline(size=64, parser=None, cache_bytes=0).run(tmp_path / "big.mp4")
    assert cached.found.all() and cached.frames.shape == (3, 64, 64, 3)
    assert np.array_equal(cached.frames, redecoded.frames) and np.allclose(cached.boxes, redecoded.boxes)
    side = cached.boxes[:, 2] - cached.boxes[:, 0]
    assert (side > 400).all() and (side < 600).all()


def test_threads_give_identical_results(pipe, edited):
    one = pipe.run(edited / "gap.mp4")
    two = FacePipeline(size=224, threads=2).run(edited / "gap.mp4")
    assert np.array_equal(one.frames, two.frames) and np.array_equal(one.parse, two.parse)
    assert np.array_equal(one.found, two.found)


def test_tiny_face(pipe, tmp_path):
    """A 120x90 video: the face is about 27 pixels wide."""
    import cv2

    from marlin.video import read_frames, write_video

    small = np.stack([cv2.resize(f, (120, 90), interpolation=cv2.INTER_AREA)
                      for f in read_frames(SAMPLES / "video01.mp4", range(0, 40, 4))])
    write_video(tmp_path / "tiny.mp4", small, fps=10)
    c = pipe.run(tmp_path / "tiny.mp4")
    assert c.found.mean() >= 0.9
    centre = (c.boxes[:, :2] + c.boxes[:, 2:]) / 2
    assert np.abs(centre - [259 / 4, 141 / 4]).max() < 6  # where the face is in video01, scaled by 1/4


def test_face_filling_the_frame(pipe):
    """A tight face crop (the official crop of a YouTube Faces video): the detector alone misses the face in some
    frames; the retry with a margin finds it, so every frame has its landmarks and facial parts in its parse map
    (frames without them would read as background, which Fasking shows first)."""
    from marlin.face.detector import FaceDetector
    from marlin.video import read_frames

    detector = FaceDetector()
    first = read_frames(SAMPLES / "cropped01.mp4", [0])[0]  # (224, 224, 3), the face fills it
    assert detector._detect(first) == []  # what the model alone gives
    (face,) = detector.detect(first)
    assert ((face.box[:2] > -20) & (face.box[2:] < 244)).all() and face.area > 150 ** 2  # in the frame, large
    c = pipe.run(SAMPLES / "cropped01.mp4")
    assert c.found.all()
    assert all((p > 1).sum() > 0.05 * p.size for p in c.parse)  # eyes, nose, mouth... (0: background, 1: skin)


@pytest.mark.parametrize("threads", [1, 2])
def test_truncated_video_raises_unless_allowed(edited, tmp_path, threads):
    """gap.mp4 (30 frames, faststart) cut in half: the stream ends early without a decoding error; the pipeline
    raises, on the decoding thread too, or keeps the frames with both counts in meta."""
    from marlin.video import TruncatedVideoError

    data = (edited / "gap.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedVideoError, match="declares 30") as e:
        FacePipeline(size=32, parser=None, threads=threads).run(cut)
    assert str(cut) in str(e.value) and 0 < e.value.decoded < 30
    kept = FacePipeline(size=32, parser=None, threads=threads, allow_truncated=True).run(cut)
    assert len(kept.frames) == e.value.decoded
    assert (kept.meta["truncated"], kept.meta["frames_declared"], kept.meta["frames_decoded"]) == \
        (True, 30, e.value.decoded)
