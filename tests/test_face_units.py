"""Unit tests of the face pipeline's pieces: crop geometry, smoothing, face choice, parser plug-in, bad input."""

import numpy as np
import pytest

from marlin.face import NoFaceError, crop_faces
from marlin.face import crop as C
from marlin.face.detector import Detection
from marlin.face.parse import TorchScriptParser
from marlin.video import VideoError, write_video


def test_crop_pads_black_and_keeps_geometry():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 90:110] = 255  # a white square centred at (100, 50)
    out = C.crop(frame, np.array([100.0, 50.0, 40.0]), 40)  # 1:1 crop centred on it
    assert out.shape == (40, 40, 3)
    assert (out[12:28, 12:28] == 255).all() and (out[:8] == 0).all()
    edge = C.crop(frame, np.array([0.0, 0.0, 40.0]), 20)  # 3/4 of the box outside the frame
    assert (edge[:10] == 0).all() and (edge[:, :10] == 0).all()
    big = C.crop(frame, np.array([100.0, 50.0, 200.0]), 20)  # strong downscale path
    assert big.shape == (20, 20, 3) and big[10, 10].max() > 100 and big[1, 10].max() == 0


def test_landmarks_to_crop_maps_box_to_crop():
    boxes = np.array([[50.0, 60.0, 20.0]])
    pts = np.array([[[40.0, 50.0], [60.0, 70.0], [50.0, 60.0]]])
    assert np.allclose(C.landmarks_to_crop(pts, boxes, 100)[0], [[0, 0], [100, 100], [50, 50]])


def test_smooth_holds_gaps_and_respects_cuts():
    raw = np.array([[np.nan] * 3] * 3 + [[10.0, 10, 50]] * 5 + [[np.nan] * 3] * 4 + [[100.0, 10, 50]] * 5)
    out = C.smooth_boxes(raw, cuts=[12])
    assert np.allclose(out[:3], [10, 10, 50])  # leading frames take the first box
    assert np.allclose(out[8:12], [10, 10, 50])  # vanished face: box held
    assert np.allclose(out[12:], [100, 10, 50])  # no blending across the cut
    noisy = np.cumsum(np.ones((40, 3)), 0) + np.random.default_rng(0).normal(0, 2, (40, 3))
    assert np.abs(np.diff(C.smooth_boxes(noisy)[:, 0], 2)).mean() < np.abs(np.diff(noisy[:, 0], 2)).mean() / 3


def _det(x, y, size, score=0.9):
    return Detection(np.array([x, y, x + size, y + size], float), np.zeros((6, 2)), score)


def test_tracker_keeps_the_same_person():
    from marlin.face.tracker import FaceTracker

    t = FaceTracker.__new__(FaceTracker)
    t.reset()
    big, small = _det(0, 0, 100), _det(300, 0, 40)
    assert t._choose([small, big]) is big  # start: the largest face
    t._last_box = np.array([300.0, 0, 340, 40])  # we were following the small face
    assert t._choose([big, small]) is small  # re-detection: the one where ours was
    assert t._choose([big]) is None  # only someone else in view: wait


def _write(path, frames):
    write_video(path, np.asarray(frames, np.uint8), fps=10)
    return path


def test_no_face_error_and_center(tmp_path):
    rng = np.random.default_rng(0)
    v = _write(tmp_path / "wall.mp4", rng.integers(90, 110, (6, 48, 64, 3)))
    with pytest.raises(NoFaceError, match="wall.mp4"):
        crop_faces(v, size=32)
    out = crop_faces(v, size=32, no_face="center")
    assert out.shape == (6, 32, 32, 3)


def test_bad_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 100)
    for p in (empty, junk, tmp_path / "missing.mp4"):
        with pytest.raises(VideoError, match=p.name):
            crop_faces(p, size=32)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_parser_plugin(tmp_path):
    torch = pytest.importorskip("torch")

    class Ramp(torch.nn.Module):  # class = round(10 * red channel)
        def forward(self, x):
            k = torch.arange(11, dtype=x.dtype).view(1, 11, 1, 1)
            return -(x[:, :1] * 10 - k).abs()

    frames = np.zeros((3, 32, 32, 3), np.uint8)
    frames[:, :, :16, 0] = 255  # left half red -> 10, right half -> 0
    path = tmp_path / "ramp.pt"
    torch.jit.script(Ramp()).save(str(path))
    dyn = torch.export.Dim.DYNAMIC
    exported = torch.export.export(Ramp(), (torch.zeros(2, 3, 32, 32),), dynamic_shapes={"x": {0: dyn}})
    torch.export.save(exported, str(tmp_path / "ramp.pt2"))
    for p in (path, tmp_path / "ramp.pt2"):  # TorchScript and torch.export files
        out = TorchScriptParser(p, batch_size=2)(frames)
        assert out.shape == (3, 32, 32) and (out[:, :, :16] == 10).all() and (out[:, :, 16:] == 0).all()

    class Wrong(torch.nn.Module):
        def forward(self, x):
            return x

    bad = tmp_path / "wrong.pt"
    torch.jit.script(Wrong()).save(str(bad))
    with pytest.raises(ValueError, match="wrong.pt"):
        TorchScriptParser(bad)(frames)
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ValueError, match="text.pt"):
        TorchScriptParser(tmp_path / "text.pt")


def test_prefetch_passes_items_and_errors():
    from marlin.face.pipeline import _prefetch

    assert list(_prefetch(iter(range(50)), depth=2)) == list(range(50))

    def broken():
        yield 1
        raise VideoError("x.mp4", "decoding failed after frame 1")

    with pytest.raises(VideoError, match="x.mp4"):
        list(_prefetch(broken()))
    it = _prefetch(iter(range(1000)), depth=2)
    assert next(it) == 0
    it.close()  # an abandoned consumer does not leave the producer blocked


def test_worker_crash_fails_only_its_job():
    from test_face_helpers import crash_on_three, crashed, noop

    from marlin.face.jobs import run_jobs

    out = sorted(run_jobs(crash_on_three, list(range(5)), 2, noop, (), crashed))
    assert out == [("crashed", 3)] + [("ok", a) for a in (0, 1, 2, 4)]


def test_layout_names(tmp_path):
    from marlin.face.layouts import celebvhq_jobs, jobs_for, videos_jobs

    (tmp_path / "v" / "sub").mkdir(parents=True)
    for f in ("sub/a.mp4", "sub/a.avi", "b.mkv", "notes.txt.bak"):
        (tmp_path / "v" / f).write_bytes(b"x")
    assert [n for _, n in videos_jobs(tmp_path / "v")] == ["b", "sub/a", "sub/a_mp4"]
    (tmp_path / "c" / "downloaded").mkdir(parents=True)
    (tmp_path / "c" / "downloaded" / "-0aBc_1.mp4").write_bytes(b"x")
    assert [n for _, n in celebvhq_jobs(tmp_path / "c")] == ["-0aBc_1"]
    with pytest.raises(ValueError, match="layout"):
        jobs_for("nope", tmp_path)


def test_frame_folder_natural_order_and_bad_image(tmp_path):
    import cv2

    from marlin.face.source import FrameDirSource

    for i in range(12):  # YouTube Faces names: 1.0.jpg ... 1.11.jpg
        cv2.imwrite(str(tmp_path / f"1.{i}.png"), np.full((4, 6), i * 20, np.uint8))
    frames = list(FrameDirSource(tmp_path).frames())
    assert [int(f[0, 0, 0]) for f in frames] == [i * 20 for i in range(12)] and frames[0].shape == (4, 6, 3)
    (tmp_path / "1.12.png").write_bytes(b"broken")
    with pytest.raises(VideoError, match="1.12.png"):
        list(FrameDirSource(tmp_path).frames())
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="empty: frame directory contains no image"):
        FrameDirSource(tmp_path / "empty")
