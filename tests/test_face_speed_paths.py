"""The face pipeline's fast path (boxes streamed while tracking, crops and parsing overlapped with tracking,
H.264 encoding overlapped with both) gives exactly what the plain two passes give."""
import hashlib

import numpy as np
import pytest

from marlin.face import FacePipeline
from marlin.face import crop as C
from marlin.face import preprocess as P
from marlin.video import read_frames, write_video


def _stream(raw, cuts, sc, ss):
    bs, got = C.BoxStream(sc, ss), {}
    for i, b in enumerate(raw):
        for j, box in bs.push(b, i in cuts):
            assert j == len(got)  # in frame order, each once
            got[j] = box.copy()
    return bs, got


def test_box_stream_equals_smooth_boxes():
    """Random raw boxes with lost faces, scene cuts, shots without a face (leading, inner, trailing): every box
    the stream hands out is bit-identical to smooth_boxes over the whole video, and it hands them out early."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        t = int(rng.integers(1, 70))
        raw = np.cumsum(rng.normal(0, 3, (t, 3)), 0) + 100
        raw[rng.random(t) < rng.choice([0.0, 0.1, 0.5, 0.95])] = np.nan
        cuts = sorted(set(rng.integers(1, max(2, t), int(rng.integers(0, 4))).tolist())) if t > 1 else []
        for a, b in zip(cuts, cuts[1:] + [t]):
            if rng.random() < 0.3:
                raw[a:b] = np.nan  # a shot without a face
        if rng.random() < 0.2:
            raw[:int(rng.integers(0, t + 1))] = np.nan
        sc, ss = [(1.0, 1.0), (2.0, 4.0), (1.6, 3.2)][trial % 3]
        full = C.smooth_boxes(raw, cuts, sc, ss)
        bs, got = _stream(raw, cuts, sc, ss)
        for j, box in got.items():
            assert np.array_equal(box, full[j]), (trial, j)
        assert not got or not np.isnan(full[:, 0]).all()
    # one shot with a face throughout: all but the last r frames are final before the end
    raw = np.cumsum(rng.normal(0, 3, (50, 3)), 0) + 100
    bs, got = _stream(raw, [], 2.0, 4.0)
    assert bs.r == 12 and len(got) == 50 - 12


@pytest.fixture(scope="module")
def clips(tmp_path_factory, samples_dir):
    """Short real clips: a face that vanishes for 5 frames and a cut to another shot (fps 10: smoothing radius
    4 frames); video05's start (4 black frames, then a fade-in)."""
    d = tmp_path_factory.mktemp("speed")
    a = read_frames(samples_dir / "video01.mp4", range(0, 60, 3))  # (20, 360, 480, 3)
    b = read_frames(samples_dir / "video05.mp4", range(40, 80, 4))  # (10, 240, 320, 3)
    b = np.stack([np.pad(f, ((60, 60), (80, 80), (0, 0))) for f in b])
    a[8:13] = 0
    write_video(d / "gap.mp4", np.concatenate([a, b]), fps=10)
    write_video(d / "fade.mp4", read_frames(samples_dir / "video05.mp4", range(24)), fps=30)
    return d


def _same(x, y):
    assert np.array_equal(x.frames, y.frames)
    assert (x.parse is None and y.parse is None) or np.array_equal(x.parse, y.parse)
    assert np.array_equal(x.landmarks, y.landmarks, equal_nan=True) and np.array_equal(x.boxes, y.boxes)
    assert x.meta == y.meta


@pytest.mark.parametrize("name", ["gap", "fade"])
def test_overlapped_equals_plain(clips, name):
    plain = FacePipeline(size=96, overlap=False).run(clips / f"{name}.mp4")
    assert plain.found.any() and not plain.found.all()
    for threads in (1, 2):
        _same(FacePipeline(size=96, threads=threads).run(clips / f"{name}.mp4"), plain)


def test_fallbacks_give_the_plain_result(clips, monkeypatch):
    """Streaming given up (held frames over cache_bytes) or a streamed box that differs from the final one:
    the frames are cropped again the plain way, so the result is still the plain one."""
    path = clips / "gap.mp4"
    plain = FacePipeline(size=64, overlap=False).run(path)
    _same(FacePipeline(size=64, threads=2, cache_bytes=0).run(path), plain)
    smooth = C.BoxStream._smooth
    monkeypatch.setattr(C.BoxStream, "_smooth", lambda self, *a: smooth(self, *a) + 0.5)
    _same(FacePipeline(size=64, threads=2).run(path), plain)


def _item(opts, overlap, src, out):
    P._init(opts)
    P._PIPE.overlap = overlap
    r = P.process_one((str(src), "x/item", str(out)))
    assert r["status"] == "done", r
    assert [f.name for f in (out / "x").iterdir()] == ["item"]  # no temporary file left behind
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (out / "x" / "item").iterdir()}


def test_preprocess_item_bytes_identical(clips, tmp_path):
    """A whole item (clip.mp4 encoded while processing, parse.npz, landmarks.npz, meta.json) is byte-identical
    to the one the plain path writes (two passes, then write_item encodes)."""
    opts = P.Options(size=96, threads=2)
    fast = _item(opts, True, clips / "gap.mp4", tmp_path / "fast")
    assert fast == _item(opts, False, clips / "gap.mp4", tmp_path / "plain")
    assert set(fast) == {"clip.mp4", "parse.npz", "landmarks.npz", "meta.json"}


def test_failed_input_leaves_no_encoded_file(clips, tmp_path, monkeypatch):
    """A truncated video fails at the end of decoding while its crops are being encoded, and an item whose
    writing fails after the crops were encoded: neither leaves a file behind."""
    data = (clips / "gap.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    P._init(P.Options(size=32, parser=None, threads=2))
    r = P.process_one((str(cut), "x/cut", str(tmp_path / "out")))
    assert r["status"] == "failed" and "declares 30" in r["error"]

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(P, "write_item", fail)
    r = P.process_one((str(clips / "gap.mp4"), "x/gap", str(tmp_path / "out")))
    assert r["status"] == "failed" and "disk full" in r["error"]
    assert [f for f in tmp_path.joinpath("out").rglob("*") if f.is_file()] == []


def test_seg_every_is_explicit_recorded_and_close(clips, tmp_path):
    """seg_every=2 (opt-in) runs the segmentation on fewer frames, keeps crops and landmarks, changes few parse
    pixels, is the same on every path and thread count, and is recorded in meta and in the preprocess summary."""
    path = clips / "gap.mp4"
    full = FacePipeline(size=96, overlap=False).run(path)
    pipes = [FacePipeline(size=96, overlap=ov, threads=t, seg_every=2) for ov, t in ((False, 1), (True, 2))]
    calls = []

    class Counted:
        def __init__(self, seg):
            self.seg, self.input_shape = seg, seg.input_shape

        def __call__(self, x):
            calls.append(1)
            return self.seg(x)

    for pipe in pipes:
        for parser in pipe._parsers:
            parser.seg = Counted(parser.seg)
    fast = [pipe.run(path) for pipe in pipes]
    _same(fast[0], fast[1])
    assert len(calls) < 0.7 * 2 * full.found.sum()  # per run: about every other frame with a face
    assert np.array_equal(fast[0].frames, full.frames) and np.array_equal(fast[0].boxes, full.boxes)
    assert 0.99 < (fast[0].parse == full.parse).mean() < 1
    assert "every 2 frames" in fast[0].meta["backends"]["parser"]
    assert "every" not in full.meta["backends"]["parser"]
    with pytest.raises(ValueError, match="seg_every"):
        FacePipeline(parser=None, seg_every=2)
    s = P.preprocess(path, tmp_path / "out", opts=P.Options(size=64, parser="landmarks", seg_every=3), progress=False)
    assert s["options"]["seg_every"] == 3
