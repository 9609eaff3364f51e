"""The synthetic world stays the same world: items drawn by the current code are those of the original
generator (commit 925db11, world version 2), bit for bit.

The demo's verdict and recorded numbers depend on these exact pictures, so a speed-up of the generator must not
move a pixel. The digests below were made with the code of 925db11 (`python tests/test_synth_stable.py` prints
them for the code on sys.path). Hashed: the arrays `render_item` returns (before H.264), the decoded YUV planes
of clip.mp4 (and of the raw video), parse.npz, landmarks.npz and meta.json (less its library versions), plus a
fingerprint of the float64 display lists (every painted point of every frame), which a change of 1e-9 pixels in
any coordinate computation moves even where no pixel changes. The pixels depend on the OpenCV and PyAV (x264)
builds they were recorded with (`RECORDED_WITH`), which scripts/install.sh installs (scripts/constraints.txt); with
other builds the test fails, naming them.
"""
import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

FRAMES, SIZE = 16, 64
# (seed, k, raw_videos): two real items (glasses, beard, lipstick, talking; hat, glasses, talking), the three kinds
# of manipulation (swap with hat, glasses and long hair; lip-sync "mouth"; flicker with hat and glasses), one with
# its raw video
EXPECTED = {
    (0, 1, False): {
        "geometry": 250001.2816516507,
        "frames": "d9c3415d35b8f9b3", "parse": "04d5410f74846c5a", "landmarks": "63b33b6fd5258b50",
        "boxes": "d5c6b3dfcc44f7de", "clip.mp4": "98b2ddebab7a40cd", "parse.npz": "04d5410f74846c5a",
        "landmarks.npz": "63b33b6fd5258b50", "meta.json": "21bf74ce79d53ec0"},
    (1, 6, False): {
        "geometry": 256032.193996184,
        "frames": "48ae8551d3dd9e57", "parse": "8f57311116f589d4", "landmarks": "06e4ac648bc9a2da",
        "boxes": "7bf035d3de4b4967", "clip.mp4": "3cf68a20380f2476", "parse.npz": "8f57311116f589d4",
        "landmarks.npz": "06e4ac648bc9a2da", "meta.json": "d09e5f1843910482"},
    (0, 4, False): {
        "geometry": 504706.3988410304,
        "frames": "5dae7296e5e182da", "parse": "add44d8701d079a3", "landmarks": "2ca1d7e5244a3286",
        "boxes": "75a7e04353fd890a", "clip.mp4": "73ce7496243dc210", "parse.npz": "add44d8701d079a3",
        "landmarks.npz": "2ca1d7e5244a3286", "meta.json": "c2ae159c85c8bbec"},
    (0, 6, False): {
        "geometry": 474588.98455798154,
        "frames": "22f831766f99234c", "parse": "5c5dba89eb2c69fd", "landmarks": "6efdba87a263ff0b",
        "boxes": "7e83ed11613675bc", "clip.mp4": "211fca6a4f2aa44c", "parse.npz": "5c5dba89eb2c69fd",
        "landmarks.npz": "6efdba87a263ff0b", "meta.json": "9f2fe8b08776d0fc"},
    (1, 1, False): {
        "geometry": 520540.388951188,
        "frames": "2e317f067cb4a72d", "parse": "e1231e2f1c55202a", "landmarks": "b45d05414914c085",
        "boxes": "39a5f256fb80ec7b", "clip.mp4": "d9a7fd5ae67fbec0", "parse.npz": "e1231e2f1c55202a",
        "landmarks.npz": "b45d05414914c085", "meta.json": "3d26e6abc427b691"},
    (1, 3, True): {
        "geometry": 636755.6048626355,
        "frames": "38789248a1bfdb27", "parse": "49b4e2434cba790c", "landmarks": "fad81ff67abcbd21",
        "boxes": "000a519050946a0c", "clip.mp4": "7584de62068d4813", "parse.npz": "49b4e2434cba790c",
        "landmarks.npz": "fad81ff67abcbd21", "meta.json": "b86b4556eb0b0bfb", "raw": "905bc335396258b9",
        "raw.mp4": "8695a612943d5dfa"},
}


RECORDED_WITH = {"opencv": "5.0.0", "av": "18.1.0"}  # the pixels depend on OpenCV's drawing and PyAV's x264


def _builds() -> dict:
    import av
    import cv2

    return {"opencv": cv2.__version__, "av": av.__version__}


def _h(*parts) -> str:
    d = hashlib.sha256()
    for p in parts:
        d.update(p if isinstance(p, bytes) else np.ascontiguousarray(p).tobytes())
    return d.hexdigest()[:16]


def _decoded(path: Path) -> str:
    import av

    with av.open(str(path)) as c:  # YUV planes as stored: no colour conversion in between
        return _h(*[f.to_ndarray() for f in c.decode(video=0)])


def _npz(path: Path) -> str:
    with np.load(path) as z:
        return _h(*[z[n] for n in sorted(z.files)])


def _fingerprint(pts: list) -> float:
    """Exactly rounded weighted sum of every painted coordinate (weights in (0, 1], exact rationals)."""
    flat = np.concatenate(pts).ravel()
    w = (np.arange(len(flat)) * 7919 % 1000 + 1) / 1000
    return math.fsum((flat * w).tolist())


def digests(seed: int, k: int, raw: bool, out: Path) -> dict:
    """Digests of item ``k`` of world ``seed`` made by ``make_item`` into ``out``, with the code on sys.path."""
    import marlin.synth.clip as clip_module
    import marlin.synth.dataset as ds

    pts, clips = [], []
    paint, render_item = clip_module.paint, ds.render_item

    def spy_paint(img, parse, prims, ss=1):
        pts.extend(p.pts for p in prims if len(p.pts) >= 2)
        return paint(img, parse, prims, ss)

    def spy_render(*a, **kw):
        clips.append(render_item(*a, **kw))
        return clips[-1]

    clip_module.paint, ds.render_item = spy_paint, spy_render
    try:
        item = Path(ds.make_item(out, k, FRAMES, SIZE, seed, raw_videos=raw))
    finally:
        clip_module.paint, ds.render_item = paint, render_item
    (c,) = clips
    meta = json.loads((item / "meta.json").read_text())
    meta.pop("backends")  # library versions
    got = {"geometry": _fingerprint(pts), "frames": _h(c.frames), "parse": _h(c.parse), "landmarks": _h(c.landmarks),
           "boxes": _h(c.face_boxes, c.head_boxes, c.crop_boxes), "clip.mp4": _decoded(item / "clip.mp4"),
           "parse.npz": _npz(item / "parse.npz"), "landmarks.npz": _npz(item / "landmarks.npz"),
           "meta.json": _h(json.dumps(meta, sort_keys=True).encode())}
    if raw:
        got["raw"] = _h(c.raw)
        got["raw.mp4"] = _decoded(out / "raw" / f"{item.name}.mp4")
    return got


@pytest.mark.parametrize("case", list(EXPECTED), ids=lambda c: f"seed{c[0]}-item{c[1]}{'-raw' if c[2] else ''}")
def test_items_are_those_of_the_original_generator(case, tmp_path):
    want = EXPECTED[case]
    got = digests(*case, tmp_path)
    assert got.keys() == want.keys()
    # float64 display lists: equal up to what another machine's sin/cos may round differently (~1e-12)
    assert abs(got.pop("geometry") - want["geometry"]) < 1e-9, "painted coordinates moved"
    builds = _builds()
    assert builds == RECORDED_WITH, (f"pixel digests were recorded with {RECORDED_WITH}, this is {builds}: install "
                                     f"with scripts/install.sh (scripts/constraints.txt), or record them anew")
    wrong = {n: (got[n], want[n]) for n in got if got[n] != want[n]}
    assert not wrong, f"the world changed: {wrong}"


def test_the_install_pins_the_builds_the_digests_were_recorded_with():
    """scripts/install.sh installs with scripts/constraints.txt; its OpenCV and PyAV are those of the digests, so
    a fresh clone draws the recorded world (and the README's demo numbers), and a new pin needs new digests."""
    pins = dict(line.split("==") for line in (ROOT / "scripts" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["opencv-python-headless"].startswith(RECORDED_WITH["opencv"] + ".")
    assert pins["av"] == RECORDED_WITH["av"]
    assert "-c scripts/constraints.txt" in (ROOT / "scripts" / "install.sh").read_text()


if __name__ == "__main__":  # print the table for the code on sys.path (how EXPECTED was made, with 925db11)
    with tempfile.TemporaryDirectory() as tmp:
        for case in [(0, 1, False), (1, 6, False), (0, 4, False), (0, 6, False), (1, 1, False), (1, 3, True)]:
            print(f"    {case}: {digests(*case, Path(tmp))!r},")
    sys.exit(0)
