"""Feature extraction: official window semantics, streaming, the `marlin extract` CLI and bad inputs."""
import numpy as np
import pytest
import torch

from helpers import tiny_config
from marlin import Marlin
from marlin.cli import main
from marlin.extract import video_features
from marlin.video import VideoError, write_video
from marlin.video.windows import clip_indices, iter_clips

CFG = tiny_config()


def test_official_windows():
    assert clip_indices(10, 16, 2, 16) == [list(range(10)) + [9] * 6]  # short: pad with the last frame
    assert clip_indices(27, 16, 2, 16) == [list(range(16))]  # 17..32 frames: first 16 consecutive
    assert clip_indices(32, 16, 2, 16) == [list(range(16))]
    clips = clip_indices(143, 16, 2, 16)  # cropped01: starts 0, 32, 64, 96
    assert [c[0] for c in clips] == [0, 32, 64, 96] and clips[1] == list(range(32, 64, 2))
    assert [c[0] for c in clip_indices(64, 16, 2, 16)] == [0]  # the official range excludes total - span
    assert [c[0] for c in clip_indices(143, 16, 2, 16, cover_tail=True)] == [0, 32, 64, 96, 111]
    assert [c[0] for c in clip_indices(100, 16, 2, 8)] == [0, 16, 32, 48, 64]  # overlapping windows


def test_iter_clips_streams_and_stops_early():
    clips = clip_indices(300, 16, 2, 8)  # overlapping windows
    read = []

    def frames():
        for i in range(300):
            read.append(i)
            yield np.full((1,), i)

    stream = iter_clips(frames(), clips)
    first = next(stream)
    assert first[:, 0].tolist() == clips[0] and len(read) == clips[0][-1] + 1  # clip out as soon as complete
    out = [first] + list(stream)
    assert [c[:, 0].tolist() for c in out] == clips
    assert len(read) == clips[-1][-1] + 1  # frames after the last window are never decoded


def _video(path, n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    write_video(path, rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), fps=25)
    return path


def test_reductions_and_batching_agree(tmp_path):
    model = Marlin(CFG, full_model=False)
    path = _video(tmp_path / "v.mp4", 50)
    feats = video_features(model, path, sample_rate=2, stride=2, batch_size=1)
    assert feats.shape == (len(clip_indices(50, 4, 2, 2)), 16)
    assert torch.allclose(video_features(model, path, sample_rate=2, stride=2, batch_size=5), feats, atol=1e-6)
    assert torch.allclose(model.extract_video(path, stride=2, reduction="mean"), feats.mean(0), atol=1e-6)
    assert torch.allclose(model.extract_video(path, stride=2, reduction="max"), feats.max(0).values, atol=1e-6)
    assert model.extract_video(path, stride=2, keep_seq=True).shape == (feats.shape[0], CFG.num_tokens, 16)
    with pytest.raises(ValueError, match="reduction"):
        model.extract_video(path, reduction="median")


def test_clips_per_call_default_follows_the_device_and_the_clip_size(tmp_path, monkeypatch):
    from marlin.extract import clips_per_call
    from marlin.models.config import resolve_config

    preset = resolve_config("marlin_vit_base_ytf")  # 1568 tokens a clip: one clip per call on a CPU
    assert clips_per_call(preset, "cpu") == 1 and clips_per_call(preset, None) == 1
    assert clips_per_call(preset, "cuda:0") == 8
    assert clips_per_call(CFG, "cpu") == 8  # 8 tokens a clip: capped at 8
    assert clips_per_call(tiny_config(img_size=64), "cpu") == 8 and clips_per_call(preset, "cpu", 3) == 3
    with pytest.raises(ValueError, match="batch_size"):
        clips_per_call(preset, "cpu", 0)

    # what extract_video hands the encoder when no batch size is given: one clip per call at 1568 tokens
    model = Marlin(tiny_config(img_size=224, patch_size=16, n_frames=16, tubelet_size=2), full_model=False)
    seen = []
    real = model.extract_features
    monkeypatch.setattr(model, "extract_features", lambda x, **kw: seen.append(len(x)) or real(x, **kw))
    path = _video(tmp_path / "v.mp4", 80, size=224)  # 2 windows
    model.extract_video(path, stride=16)
    assert seen and set(seen) == {1}
    seen.clear()
    model.extract_video(path, stride=16, batch_size=2)
    assert seen == [2]


def test_bad_videos_raise_errors_naming_the_file(tmp_path):
    model = Marlin(CFG, full_model=False)
    text = tmp_path / "text.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    good = _video(tmp_path / "good.mp4", 120)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    wrong_size = _video(tmp_path / "big.mp4", 20, size=48)
    for path, problem in [(text, "not a readable video"), (empty, "empty"), (truncated, "truncated or corrupt"),
                          (wrong_size, "48x48 but the model expects 32x32"), (tmp_path / "nope.mp4", "does not exist")]:
        with pytest.raises(VideoError, match=problem) as e:
            model.extract_video(path)
        assert str(path) in str(e.value)


def test_extract_cli_skips_bad_files_and_resumes(tmp_path, capsys):
    src = tmp_path / "videos"
    (src / "sub").mkdir(parents=True)
    _video(src / "a.mp4", 40)
    _video(src / "sub" / "b.mp4", 12, seed=1)
    (src / "sub" / "broken.mp4").write_text("garbage")
    model = Marlin(CFG, full_model=False)
    ckpt = tmp_path / "tiny.safetensors"
    model.save(ckpt)
    out = tmp_path / "feats"
    rc = main(["extract", str(src), "--checkpoint", str(ckpt), "--out", str(out), "--batch-size", "2"])
    assert rc == 1  # one input failed, the others were written
    assert (out / "a.npy").exists() and (out / "sub" / "b.npy").exists()
    assert "broken.mp4" in (out / "failed.txt").read_text()
    a = np.load(out / "a.npy")
    assert np.allclose(a, model.extract_video(src / "a.mp4").numpy(), atol=1e-6)
    (src / "sub" / "broken.mp4").unlink()
    mtime = (out / "a.npy").stat().st_mtime_ns
    assert main(["extract", str(src), "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert (out / "a.npy").stat().st_mtime_ns == mtime  # existing outputs are skipped
    assert "0 written, 2 already present" in capsys.readouterr().out
    lst = tmp_path / "list.txt"
    lst.write_text(f"{src / 'a.mp4'}\n")
    assert main(["extract", str(lst), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o2"),
                 "--reduction", "mean"]) == 0
    assert np.load(tmp_path / "o2" / "a.npy").shape == (16,)


def test_official_sample_video_through_cli(tmp_path, fixtures_dir):
    out = tmp_path / "o"
    rc = main(["extract", str(fixtures_dir / "cropped01.mp4"), "--model", str(fixtures_dir / "tiny.yaml"),
               "--checkpoint", str(fixtures_dir / "tiny.encoder.pt"), "--out", str(out)])
    assert rc == 0
    assert np.abs(np.load(out / "cropped01.npy") - np.load(fixtures_dir / "cropped01.features.npy")).max() <= 1e-4


def test_crop_face_runs_the_face_pipeline(tmp_path, fixtures_dir, samples_dir):
    """A raw 320x240 video is rejected without cropping and featurised with --crop-face."""
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt")
    raw = samples_dir / "video05.mp4"  # 90 frames -> windows at 0 and 32
    with pytest.raises(VideoError, match="crop_face"):
        model.extract_video(raw)
    from marlin.face import crop_faces

    crops = crop_faces(raw, size=224)
    assert crops.shape == (90, 224, 224, 3)
    feats = model.extract_video(raw, crop_face=True)
    assert feats.shape == (2, 48)
    from marlin.extract import clips_to_tensor

    expected = model.extract_features(clips_to_tensor([crops[0:32:2], crops[32:64:2]]), keep_seq=False)
    assert torch.allclose(feats, expected, atol=1e-5)
    out = tmp_path / "o"
    assert main(["extract", str(raw), "--crop-face", "--model", str(fixtures_dir / "tiny.yaml"),
                 "--checkpoint", str(fixtures_dir / "tiny.encoder.pt"), "--out", str(out)]) == 0
    assert np.allclose(np.load(out / "video05.npy"), feats.numpy(), atol=1e-5)


def test_short_truncated_video_is_not_padded_silently(tmp_path):
    """An 8-frame video (one window of 4 frames at rate 2: decoded whole) cut in half: refused, not padded."""
    from marlin.video import TruncatedVideoError, read_frames

    model = Marlin(CFG, full_model=False)
    whole = _video(tmp_path / "whole.mp4", 8)
    import av

    with av.open(str(whole)) as c:  # cut at a packet boundary: the stream just ends, no decoding error
        pos = sorted(p.pos for p in c.demux(c.streams.video[0]) if p.size)[4]
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:pos])
    decoded = len(read_frames(cut))
    assert 0 < decoded < 8
    with pytest.raises(TruncatedVideoError, match=f"after {decoded} frames although the container declares 8"):
        model.extract_video(cut)
    assert model.extract_video(whole).shape == (1, 16)


def test_record_differences_compare_every_key_of_a_shared_section():
    """A cache made with other dataset options (an option on one side only, or {} vs options) is not reused;
    sections a `marlin extract` record lacks (dataset root) are still not compared."""
    from marlin.extract import record_differences

    cached = {"windows": {"stride": 16}, "dataset_options": {"videos": ["preprocessed"]}}
    assert record_differences(cached, {**cached, "dataset_options": {}})
    assert record_differences(cached, {**cached, "dataset_options": {"fold": 1}}) == [
        "dataset_options.fold: cached '<none>', needed 1",
        "dataset_options.videos: cached ['preprocessed'], needed '<none>'"]
    assert record_differences({**cached, "dataset_options": {}}, cached)
    assert record_differences(cached, {**cached, "root": "/data"}) == []  # a section the cache does not hold
