"""LSE-D / LSE-C on hand-made distance curves and embeddings; FID against closed forms; FID extractors."""
import numpy as np
import pytest
import torch

from helpers import tiny_config
from marlin.checkpoints import CheckpointError
from marlin.lipsync.fid import fid, frechet_distance, load_extractor, statistics
from marlin.lipsync.inception import FIDInceptionV3
from marlin.lipsync.metrics import lse_from_curve, offset_curve


def test_lse_on_v_shaped_curve():
    offsets = np.arange(-15, 16)
    curve = 0.5 + 0.1 * np.abs(offsets + 3)  # minimum 0.5 at audio offset -3
    r = lse_from_curve(curve)
    assert r["lse_d"] == pytest.approx(0.5)
    # |o + 3| over o = -15..15 sorted: 0, 1, 1, ..., the 16th value is 8 -> median 1.3
    assert r["lse_c"] == pytest.approx(0.8)
    assert r["av_offset"] == 3  # syncnet_python's sign: vshift - argmin


def test_lse_flat_and_missing_values():
    assert lse_from_curve(np.full(7, 2.0))["lse_c"] == 0
    r = lse_from_curve([np.nan, 1.0, 0.4, 0.9, np.nan])
    assert r["lse_d"] == pytest.approx(0.4) and r["lse_c"] == pytest.approx(0.5) and r["av_offset"] == 0
    with pytest.raises(ValueError, match="odd-length"):
        lse_from_curve(np.ones(4))
    with pytest.raises(ValueError, match="no finite"):
        lse_from_curve(np.full(3, np.nan))


def test_offset_curve_finds_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(60, 8))
    v = a[3:43]  # video window i matches audio window i + 3
    curve = offset_curve(v, a, vshift=5)
    assert curve.shape == (11,)
    assert int(np.nanargmin(curve)) == 5 + 3 and curve[8] == pytest.approx(0)
    r = lse_from_curve(curve)
    assert r["av_offset"] == -3 and r["lse_c"] > 1
    short = offset_curve(v[:2], a[:2], vshift=5)  # offsets without pairs are NaN
    assert np.isnan(short[0]) and not np.isnan(short[5])


def test_frechet_closed_forms():
    assert frechet_distance([0.0], [[1.0]], [2.0], [[4.0]]) == pytest.approx(4 + 1 + 4 - 2 * 2)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.diag([1.0, 2.0, 3.0]), np.diag([4.0, 2.0, 0.5])
    expected = 5 + sum(a + b - 2 * np.sqrt(a * b) for a, b in zip([1, 2, 3], [4, 2, 0.5]))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    sa, sb = a @ a.T, b @ b.T  # non-commuting covariances
    assert frechet_distance(mu1[:1].repeat(4), sa, mu1[:1].repeat(4), sa) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu1[:1].repeat(4), sa, mu2[:1].repeat(4), sb) == pytest.approx(
        frechet_distance(mu2[:1].repeat(4), sb, mu1[:1].repeat(4), sa))


def test_fid_from_samples_matches_the_gaussians():
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, size=(20000, 2))
    y = rng.normal([1, 0], [1, 2], size=(20000, 2))
    assert frechet_distance(*statistics(x), *statistics(y)) == pytest.approx(1 + (1 + 4 - 2 * 2), abs=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        statistics(x[:1])


def test_inception_weights_file(tmp_path):
    torch.manual_seed(0)
    net = FIDInceptionV3()
    sd = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # pytorch-fid's file has a classifier
    torch.save(sd, tmp_path / "pt_inception.pth")
    ext = load_extractor("inception", tmp_path / "pt_inception.pth")
    frames = np.random.default_rng(0).integers(0, 255, (2, 40, 40, 3), dtype=np.uint8)
    feats = ext(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: not pytorch-fid InceptionV3"):
        load_extractor("inception", tmp_path / "other.pth")
    with pytest.raises(ValueError, match="weights file"):
        load_extractor("inception", None)
    with pytest.raises(ValueError, match="unknown FID feature extractor"):
        load_extractor("nope", tmp_path / "other.pth")


def test_marlin_extractor_fid(tmp_path):
    from marlin.lipsync.toy import talking_clip
    from marlin.models import Marlin

    cfg = tiny_config(decoder_embed_dim=16)
    torch.manual_seed(0)
    Marlin(cfg, full_model=False).save(tmp_path / "m.safetensors")
    ext = load_extractor("marlin", tmp_path / "m.safetensors")
    a, _, _ = talking_clip(40, 32, seed=0)
    b, _, _ = talking_clip(40, 32, seed=1)
    same = fid(ext, a[:20], a[20:])  # same face, different mouth states
    other = fid(ext, a, np.ascontiguousarray(255 - b))
    assert 0 <= same < other
