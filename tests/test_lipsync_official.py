"""The official-SyncNet path for published-scale LSE: python_speech_features-compatible MFCCs and
syncnet_python's scoring (zero-padded offsets, 5-frame windows, 4 MFCC steps per frame)."""
import json

import numpy as np
import pytest
import torch

from marlin.checkpoints import CheckpointError
from marlin.lipsync.mfcc import mfcc
from marlin.lipsync.syncnet_v2 import SyncNetV2, official_lse
from marlin.lipsync.toy import talking_clip


def test_mfcc_matches_python_speech_features():
    t = np.arange(4000)
    x = (3000 * np.sin(2 * np.pi * 440 * t / 16000) + 1000 * np.sin(2 * np.pi * 3100 * t / 16000) * (t > 1500))
    m = mfcc(x.astype(np.int16))
    assert m.shape == (24, 13)  # 1 + ceil((4000 - 400) / 160) frames
    # python_speech_features 0.6: mfcc(x, 16000), rows 0, 12 and 23 (computed once with that package)
    ref = {0: [17.09921863, 18.80387103, 1.70359991, -14.18391662, -27.19110484, -33.52125487, -29.69518109,
               -18.54418419, -3.26994969, 9.99215404, 18.06548715, 17.99958408, 11.88968689],
           12: [18.85014823, 7.83239858, -7.05860584, 37.93240256, -43.1787347, -35.41165102, 3.26421192,
                -40.92946163, -2.94161008, 39.08212962, -4.42588093, 22.59318848, 27.44838329],
           23: [18.62389459, 3.29794163, -8.71581526, 24.55636553, -45.34683151, -37.46232366, 4.87363576,
                -39.37792958, -2.89974112, 35.66934683, -5.40648829, 19.94845543, 25.56404859]}
    for row, values in ref.items():
        np.testing.assert_allclose(m[row], values, atol=1e-6)


def _reference_scores(net, faces, audio, vshift):
    """syncnet_python's SyncNetInstance.evaluate, re-stated with torch ops (BGR 0-255 frames, int16 MFCC)."""
    im = torch.from_numpy(faces[..., ::-1].astype(float)).float().permute(3, 0, 1, 2)[None]  # (1, 3, N, 224, 224)
    cct = torch.from_numpy(mfcc(np.round(audio * 32767)).T.copy()).float()[None, None]
    last = min(len(faces), len(audio) // 640) - 5
    with torch.no_grad():
        v = net.embed_face(torch.cat([im[:, :, i:i + 5] for i in range(last)]))
        a = net.embed_audio(torch.cat([cct[:, :, :, 4 * i:4 * i + 20] for i in range(last)]))
    ap = torch.nn.functional.pad(a, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(v[[i]].repeat(2 * vshift + 1, 1), ap[i:i + 2 * vshift + 1])
             for i in range(len(v))]
    mdist = torch.stack(dists, 1).mean(1)
    minval, minidx = torch.min(mdist, 0)
    return vshift - int(minidx), float(minval), float(torch.median(mdist) - minval)


def test_official_scoring_matches_syncnet_python(tmp_path):
    torch.manual_seed(0)
    net = SyncNetV2()
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2)
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}  # 2017-era file
    torch.save(sd, tmp_path / "syncnet_v2.model")

    from marlin.lipsync.evaluate import load_scorer

    score, size, kind = load_scorer(tmp_path / "syncnet_v2.model")
    assert (size, kind) == (None, "syncnet_v2")  # frames read as they are, resized by the scorer
    faces, audio, _ = talking_clip(12, 224, seed=3)
    r = score(faces, audio, 25.0, 4)
    offset, lse_d, lse_c = _reference_scores(net.eval(), faces, audio, 4)
    assert r["av_offset"] == offset
    assert r["lse_d"] == pytest.approx(lse_d, rel=1e-4) and r["lse_c"] == pytest.approx(lse_c, rel=1e-3, abs=1e-4)
    with pytest.raises(ValueError, match="25 fps"):
        score(faces, audio, 30.0, 4)
    with pytest.raises(ValueError, match="too short"):
        official_lse(net, faces[:5], audio, 4)

    torch.save({"netcnnlip.0.weight": torch.zeros(1)}, tmp_path / "bad.model")
    with pytest.raises(CheckpointError, match="bad.model: not syncnet_python's syncnet_v2"):
        load_scorer(tmp_path / "bad.model")


def test_evaluate_cli_with_the_official_syncnet(tmp_path, monkeypatch):
    from marlin.cli import main
    from marlin.lipsync.audio import write_video_with_audio

    monkeypatch.setenv("TQDM_DISABLE", "1")
    torch.manual_seed(1)
    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    faces, audio, _ = talking_clip(12, 48, seed=4)
    write_video_with_audio(tmp_path / "v/a.mp4", faces, audio)
    assert main(["lipsync", "evaluate", "--syncnet", str(tmp_path / "syncnet_v2.model"), "--videos",
                 str(tmp_path / "v"), "--out", str(tmp_path / "ev"), "--vshift", "3", "--device", "cpu"]) == 0
    r = json.loads((tmp_path / "ev/videos/a.json").read_text())
    assert r["syncnet"] == "syncnet_v2" and len(r["curve"]) == 7


def test_official_scoring_resizes_frames_like_syncnet_python(tmp_path, monkeypatch):
    """syncnet_python (SyncNetInstance_calc_scores.py of Wav2Lip's evaluation) resizes each decoded frame with
    cv2.resize(img, (224, 224)), i.e. bilinear: the network must see exactly those pixels (in BGR)."""
    import cv2

    from marlin.lipsync.audio import write_video_with_audio
    from marlin.lipsync.data import video_entries
    from marlin.lipsync.evaluate import evaluate_lse, load_scorer
    from marlin.video import read_frames

    torch.manual_seed(2)
    torch.save(SyncNetV2().state_dict(), tmp_path / "syncnet_v2.model")
    faces, audio, _ = talking_clip(8, 48, seed=5)
    write_video_with_audio(tmp_path / "v/a.mp4", faces, audio)
    seen = []
    embed = SyncNetV2.embed_face
    monkeypatch.setattr(SyncNetV2, "embed_face", lambda self, x: (seen.append(x.clone()), embed(self, x))[1])
    res = evaluate_lse(load_scorer(tmp_path / "syncnet_v2.model"), video_entries([tmp_path / "v"]), tmp_path / "ev",
                       vshift=1, progress=False)
    assert res["results"]["a"]["frames"] == 8
    want = np.stack([cv2.resize(f, (224, 224)) for f in read_frames(tmp_path / "v/a.mp4")])[..., ::-1]
    got = seen[0][0].permute(1, 2, 3, 0).numpy()  # first window: (5, 224, 224, 3) BGR
    np.testing.assert_array_equal(got, want[:5].astype(np.float32))
