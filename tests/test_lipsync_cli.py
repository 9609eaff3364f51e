"""`marlin lipsync` end to end on generated talking clips: toy data, train-syncnet, train (cnn, marlin),
infer (mp4 with audio, paste-back into the source video), evaluate (resumable, bad input skipped)."""
import json

import av
import numpy as np
import pytest
import torch

from helpers import tiny_config
from marlin.cli import main
from marlin.lipsync.align import frames_for_audio
from marlin.lipsync.audio import load_audio
from marlin.lipsync.toy import talking_clip
from marlin.models import Marlin
from marlin.video import read_frames

TINY = ["--face-size", "32", "--width", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TQDM_DISABLE", "1")
        yield _train(tmp_path_factory.mktemp("cli"))


def _train(d):
    assert main(["lipsync", "toy", str(d / "lrs2"), "--speakers", "2", "--per-speaker", "2", "--frames", "50"]) == 0
    assert main(["lipsync", "train-syncnet", "--data", str(d / "lrs2"), "--out", str(d / "sync.pt"), *TINY,
                 "--stages", "3", "--embed-dim", "32", "--steps", "20", "--batch", "8", "--lr", "1e-3"]) == 0
    assert main(["lipsync", "train", "--data", str(d / "lrs2"), "--syncnet", str(d / "sync.pt"), "--out",
                 str(d / "gen.pt"), *TINY, "--audio-dim", "32", "--disc-width", "8", "--steps", "4",
                 "--batch", "2"]) == 0
    return d


def test_train_marlin_encoder(trained, capsys):
    d = trained
    cfg = tiny_config(n_frames=16, encoder_embed_dim=32, decoder_embed_dim=16)
    Marlin(cfg).save(d / "tiny.safetensors")
    common = ["lipsync", "train", "--data", str(d / "lrs2"), "--encoder", "marlin", "--marlin",
              str(d / "tiny.safetensors"), *TINY, "--audio-dim", "16", "--decoder-width", "16", "--steps", "2",
              "--batch", "1"]
    assert main(common + ["--out", str(d / "gm.pt"), "--sync-wt", "0", "--disc-wt", "0"]) == 0
    assert "l1:" in capsys.readouterr().out
    # the 5-frame expert cannot judge 16-frame windows: a clear error, no traceback
    assert main(common + ["--out", str(d / "gm2.pt"), "--syncnet", str(d / "sync.pt")]) == 2  # bad input
    assert "multiple of the SyncNet window" in capsys.readouterr().err


def test_infer_writes_video_with_audio(trained):
    d = trained
    face, audio, out = d / "lrs2/main/1000/00001.mp4", d / "lrs2/main/1001/00002.mp4", d / "out.mp4"
    assert main(["lipsync", "infer", "--checkpoint", str(d / "gen.pt"), "--face", str(face), "--audio", str(audio),
                 "--out", str(out), "--preview", str(d / "preview.png")]) == 0
    import cv2

    assert cv2.imread(str(d / "preview.png")).shape == (64, 8 * 32, 3)  # inputs above generated faces
    assert cv2.imread(str(d / "gen.png")).shape == (4 * 32, 5 * 32, 3)  # training sample written with the checkpoint
    # the per-step losses drawn beside their CSV: one panel per loss (the generator's first 4, SyncNet's one)
    assert cv2.imread(str(d / "gen.curves.png")).shape == (340, 4 * 460, 3)
    assert cv2.imread(str(d / "sync.curves.png")).shape == (340, 460, 3)
    src = load_audio(audio)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
    frames = read_frames(out)
    assert frames.shape == (frames_for_audio(len(src)), 32, 32, 3)
    back = load_audio(out)
    n = min(len(back), len(src)) - 1000
    assert np.corrcoef(back[1000:n], src[1000:n])[0, 1] > 0.98
    assert main(["lipsync", "infer", "--checkpoint", str(d / "gen.pt"), "--face", str(face), "--audio",
                 str(d / "nope.wav"), "--out", str(d / "x.mp4")]) == 2


def test_infer_pastes_back_into_the_source(trained):
    from marlin.data.layout import write_item
    from marlin.lipsync.audio import write_video_with_audio

    d = trained
    faces, audio, _ = talking_clip(30, 32, seed=7)
    src = np.full((30, 64, 80, 3), 128, np.uint8)
    src[:, 16:48, 24:56] = faces
    write_video_with_audio(d / "src.mp4", src, audio)
    item = write_item(d / "items/src", faces, {"source": str(d / "src.mp4"), "fps": 25.0,
                                               "boxes": [[24, 16, 56, 48]] * 30, "face_found": [True] * 30})
    out = d / "pasted.mp4"
    assert main(["lipsync", "infer", "--checkpoint", str(d / "gen.pt"), "--face", str(item.root), "--audio",
                 str(d / "src.mp4"), "--out", str(out), "--paste"]) == 0
    frames = read_frames(out)
    assert frames.shape[1:] == (64, 80, 3)
    outside = np.abs(frames[:, :, :20].astype(int) - 128).mean()
    assert outside < 3  # the background outside the box is the source's
    upper = np.abs(frames[:, 16:32, 24:56].astype(int) - faces[: len(frames), :16].astype(int)).mean()
    assert upper < 12  # the upper half of the face is the input's
    longer = d / "lrs2/main/1000/00001.mp4"  # 2 s of audio for a 1.2 s source: the source loops
    assert main(["lipsync", "infer", "--checkpoint", str(d / "gen.pt"), "--face", str(item.root), "--audio",
                 str(longer), "--out", str(out), "--paste"]) == 0
    frames = read_frames(out)
    assert len(frames) == frames_for_audio(len(load_audio(longer))) > 30
    assert np.abs(frames[30:, :, :20].astype(int) - 128).mean() < 3


def test_evaluate_resumes_and_skips_bad_input(trained, capsys):
    d = trained
    broken = d / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    lst = d / "eval.txt"
    lst.write_text("lrs2/main/1000/00001.mp4\nbroken.mp4\n")
    args = ["lipsync", "evaluate", "--syncnet", str(d / "sync.pt"), "--videos", str(lst), "--out", str(d / "ev"),
            "--vshift", "5"]
    assert main(args) == 1  # the run completed, but an input failed
    captured = capsys.readouterr()
    assert "broken.mp4" in captured.err and "LSE-D" in captured.out
    summary = json.loads((d / "ev/summary.json").read_text())
    assert summary["videos"] == 1 and "broken" in summary["failed"]
    per_video = d / "ev/videos/lrs2/main/1000/00001.json"
    r = json.loads(per_video.read_text())
    assert len(r["curve"]) == 11 and r["lse_c"] >= 0 and r["lse_d"] == pytest.approx(min(r["curve"]))
    mtime = per_video.stat().st_mtime_ns
    assert main(args) == 1
    assert per_video.stat().st_mtime_ns == mtime  # reused, not recomputed
    assert main(["lipsync", "evaluate", "--syncnet", str(d / "sync.pt"), "--data", str(d / "lrs2"), "--split",
                 "test", "--out", str(d / "ev2"), "--vshift", "3"]) == 0
    assert json.loads((d / "ev2/summary.json").read_text())["videos"] == 1


def test_evaluate_fid_with_a_marlin_extractor(trained, capsys):
    d = trained
    cfg = tiny_config(decoder_embed_dim=16)
    torch.manual_seed(0)
    Marlin(cfg, full_model=False).save(d / "fid_marlin.safetensors")
    assert main(["lipsync", "evaluate", "--syncnet", str(d / "sync.pt"), "--videos", str(d / "lrs2/main/1000"), "--out",
                 str(d / "ev_fid"), "--vshift", "3", "--fid-real", str(d / "lrs2/main"), "--fid-extractor", "marlin",
                 "--fid-weights", str(d / "fid_marlin.safetensors"), "--fid-size", "32"]) == 0
    summary = json.loads((d / "ev_fid/summary.json").read_text())
    assert summary["fid_extractor"] == "marlin" and summary["fid"] > 0
    assert main(["lipsync", "evaluate", "--syncnet", str(d / "sync.pt"), "--videos", str(d / "lrs2/main/1000"), "--out",
                 str(d / "ev_fid2"), "--fid-real", str(d / "lrs2/main")]) == 2  # no weights: a clear error
    assert "needs a weights file" in capsys.readouterr().err


def test_lrs2_faces_from_items_and_wav2lip_folders(tmp_path):
    import wave

    import cv2

    from marlin.data.layout import write_item
    from marlin.lipsync.data import ClipStore, lrs2_entries
    from marlin.lipsync.audio import write_video_with_audio

    root, faces_root = tmp_path / "lrs2", tmp_path / "faces"
    clips = {name: talking_clip(20, 48, seed=k) for k, name in enumerate(["100/00001", "100/00002", "101/00001"])}
    for name, (frames, audio, _) in clips.items():
        write_video_with_audio(root / "main" / f"{name}.mp4", frames, audio)
    (root / "test.txt").write_text("100/00001 NF\n100/00002 MV\n101/00001\n")
    write_item(faces_root / "100/00001", clips["100/00001"][0][:, 8:40, 8:40], {"fps": 25.0})  # a face item
    w2l = faces_root / "100/00002"  # Wav2Lip's preprocessed layout: numbered jpgs + audio.wav
    w2l.mkdir(parents=True)
    for i, f in enumerate(clips["100/00002"][0]):
        cv2.imwrite(str(w2l / f"{i}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    with wave.open(str(w2l / "audio.wav"), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16000)
        wav.writeframes((clips["100/00002"][1] * 32767).astype("<i2").tobytes())
    entries = lrs2_entries(root, "test", faces_root)
    assert [e.name for e in entries] == ["100/00001", "100/00002", "101/00001"]
    assert entries[0].faces == faces_root / "100/00001" and entries[0].audio == root / "main/100/00001.mp4"
    assert entries[1].audio == w2l / "audio.wav" and entries[2].faces == root / "main/101/00001.mp4"
    store = ClipStore(entries, 32, min_frames=10)
    for i in range(3):
        frames, mel, fps = store.get(i)
        assert frames.shape == (20, 32, 32, 3) and mel.shape[0] == 80 and fps == 25.0
    with pytest.raises(ValueError, match="unknown LRS2 split"):
        lrs2_entries(root, "dev")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        lrs2_entries(root, "val")


def test_training_progress_bar_can_be_turned_off(tmp_path, capsys):
    """Batch jobs' logs: `--no-progress` leaves no progress bar on stderr (and the bar is there without it)."""
    assert main(["lipsync", "toy", str(tmp_path / "lrs2"), "--speakers", "2", "--per-speaker", "2", "--frames",
                 "50"]) == 0
    base = ["lipsync", "train-syncnet", "--data", str(tmp_path / "lrs2"), *TINY, "--stages", "3", "--embed-dim",
            "32", "--steps", "2", "--batch", "4"]
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a.pt")]) == 0
    assert "syncnet:" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b.pt"), "--no-progress"]) == 0
    assert "syncnet:" not in capsys.readouterr().err
