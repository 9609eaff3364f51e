"""SyncNet expert on generated talking clips: training lowers the loss, resumes, and the LSE metric prefers
aligned audio over shifted or unrelated audio."""
import numpy as np
import pytest
import torch

from marlin.checkpoints import CheckpointError
from marlin.lipsync.config import SyncTrainConfig
from marlin.lipsync.data import ClipStore, lrs2_entries, sync_batch
from marlin.lipsync.mel import melspectrogram
from marlin.lipsync.metrics import lse
from marlin.lipsync.syncnet import SyncNetConfig
from marlin.lipsync.toy import talking_clip, write_toy_lrs2
from marlin.lipsync.train import load_lipsync_checkpoint, load_syncnet, train_syncnet

CFG = SyncNetConfig(window=5, face_size=32, width=8, stages=3, embed_dim=32)
STEPS = 240


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lrs2")
    write_toy_lrs2(root, speakers=2, per_speaker=4, n_frames=75, size=32)
    store = ClipStore(lrs2_entries(root, "train"), 32, min_frames=8)
    torch.manual_seed(0)
    out = root / "sync.pt"
    history = train_syncnet(store, out, CFG, SyncTrainConfig(steps=STEPS, batch=16, lr=1e-3, save_every=100))
    return store, out, history


def test_sync_batch_shapes(trained):
    store = trained[0]
    faces, mels, labels = sync_batch(store, 4, 5, np.random.default_rng(0))
    assert faces.shape == (4, 5, 3, 16, 32) and mels.shape == (4, 1, 80, 16)
    assert labels.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_training_lowers_the_loss(trained):
    h = trained[2]
    assert len(h) == STEPS
    assert np.mean(h[-40:]) < np.mean(h[:20]) - 0.08


def test_lse_prefers_aligned_audio(trained):
    net = load_syncnet(trained[1])
    faces, audio, _ = talking_clip(100, 32, seed=50)  # a clip not seen in training
    aligned = lse(net, faces, melspectrogram(audio), vshift=10)
    shifted = lse(net, faces, melspectrogram(np.roll(audio, 6 * 640)), vshift=10)  # audio 6 frames late
    _, other, _ = talking_clip(100, 32, seed=150)
    unrelated = lse(net, faces, melspectrogram(other), vshift=10)
    assert abs(aligned["av_offset"]) <= 1
    assert abs(shifted["av_offset"] + 6) <= 1  # the expert finds the shift (syncnet_python sign)
    curve = np.array(aligned["curve"])
    assert curve[10] < np.array(shifted["curve"])[10]  # at offset 0 the aligned pair is closer
    assert aligned["lse_d"] < unrelated["lse_d"] and aligned["lse_c"] > unrelated["lse_c"]


def test_resume_continues_from_the_checkpoint(trained, tmp_path):
    store, out, history = trained
    copy = tmp_path / "sync.pt"
    copy.write_bytes(out.read_bytes())
    h = train_syncnet(store, copy, CFG, SyncTrainConfig(steps=STEPS + 3, batch=4, lr=1e-3))
    assert len(h) == STEPS + 3 and h[:STEPS] == history
    assert load_lipsync_checkpoint(copy, "syncnet")["step"] == STEPS + 3
    with pytest.raises(CheckpointError, match="another SyncNet config"):
        train_syncnet(store, copy, SyncNetConfig(window=5, face_size=32, width=4, stages=3, embed_dim=32),
                      SyncTrainConfig(steps=1))
    with pytest.raises(CheckpointError, match="expected a generator"):
        load_lipsync_checkpoint(copy, "generator")


def test_bad_video_is_skipped(tmp_path, trained):
    store = trained[0]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    from marlin.lipsync.data import Entry

    mixed = ClipStore([Entry("broken", bad, bad)] + store.entries[:1], 32, min_frames=8)
    faces, _, _ = sync_batch(mixed, 4, 5, np.random.default_rng(0))
    assert faces.shape[0] == 4 and "broken" in mixed.bad and "broken.mp4" in mixed.bad["broken"]
    with pytest.raises(RuntimeError, match="no usable video"):
        sync_batch(ClipStore([Entry("broken", bad, bad)], 32, 8), 2, 5, np.random.default_rng(0))


def test_frames_without_audio_are_dropped(tmp_path):
    from marlin.lipsync.audio import write_video_with_audio
    from marlin.lipsync.data import Entry

    faces, audio, _ = talking_clip(50, 32, seed=9)
    write_video_with_audio(tmp_path / "short.mp4", faces, audio[: 16000])  # 1 s of audio for 2 s of video
    store = ClipStore([Entry("short", tmp_path / "short.mp4", tmp_path / "short.mp4")], 32, min_frames=8)
    frames, mel, fps = store.get(0)
    assert fps == 25.0 and 25 <= len(frames) <= 27 and mel.shape[1] >= 80 * len(frames) / 25
    assert ClipStore(store.entries, 32, min_frames=40).get(0) is None  # too short once trimmed: skipped


def test_worker_processes_build_batches(trained, tmp_path):
    store = trained[0]
    h = train_syncnet(store, tmp_path / "w.pt", CFG, SyncTrainConfig(steps=3, batch=4, lr=1e-3), workers=1)
    assert len(h) == 3 and all(np.isfinite(h))
