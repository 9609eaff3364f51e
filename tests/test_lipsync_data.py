"""The LRS2 layout: the pretrain list's videos live under ROOT/pretrain/, the others under ROOT/main/."""
from marlin.lipsync.audio import write_video_with_audio
from marlin.lipsync.data import ClipStore, lrs2_entries
from marlin.lipsync.toy import talking_clip


def test_lrs2_pretrain_split_reads_root_pretrain(tmp_path):
    root = tmp_path / "lrs2"
    frames, audio, _ = talking_clip(12, 16, seed=0)
    write_video_with_audio(root / "main/5535415699068794046/00001.mp4", frames, audio)
    write_video_with_audio(root / "pretrain/5535415699068794046/00017.mp4", frames[:10], audio[:6400])
    (root / "train.txt").write_text("5535415699068794046/00001\n")
    (root / "test.txt").write_text("5535415699068794046/00001 NF\n")
    (root / "pretrain.txt").write_text("5535415699068794046/00017\n")
    (pre,) = lrs2_entries(root, "pretrain")
    assert pre.faces == root / "pretrain/5535415699068794046/00017.mp4" == pre.audio
    for split in ("train", "test"):
        (e,) = lrs2_entries(root, split)
        assert e.faces == root / "main/5535415699068794046/00001.mp4"
    got = ClipStore([pre], 16, min_frames=5).get(0)
    assert got is not None and len(got[0]) == 10  # the pretrain video itself was read


def test_video_entries_give_every_video_its_own_name(tmp_path):
    """dirA/x.mp4 and dirB/x.mp4 are two entries with two names (they shared the name "x")."""
    import numpy as np

    from marlin.lipsync.data import video_entries
    from marlin.video import write_video

    for d in ("dirA", "dirB"):
        write_video(tmp_path / d / "x.mp4", np.zeros((2, 16, 16, 3), np.uint8), fps=25)
    entries = video_entries([str(tmp_path / "dirA" / "x.mp4"), str(tmp_path / "dirB" / "x.mp4")])
    assert sorted(e.name for e in entries) == ["dirA/x", "dirB/x"]
