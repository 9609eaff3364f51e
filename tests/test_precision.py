"""Extraction precision: `auto | 32 | bf16 | 16` through every entry point (API, `marlin extract`, the downstream
feature cache), `auto` per hardware, the precision recorded with the outputs, bf16 close to float32."""
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config

from marlin import Marlin
from marlin.cli import main
from marlin.video import write_video


def _cpu_bf16(monkeypatch, native: bool):
    """Pretend this CPU does (not) compute bf16 natively."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)


def _cos(a, b) -> float:
    return torch.nn.functional.cosine_similarity(torch.as_tensor(a).flatten(0, -2),
                                                 torch.as_tensor(b).flatten(0, -2), dim=-1).min().item()


@pytest.fixture(scope="module")
def official(fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt", full_model=False)
    x = torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255
    return model, x


def test_auto_resolves_per_hardware(monkeypatch):
    from marlin.precision import resolve_extract_precision

    _cpu_bf16(monkeypatch, False)
    assert resolve_extract_precision("auto", "cpu") == "32"
    assert resolve_extract_precision("auto", "cuda") == "bf16"
    _cpu_bf16(monkeypatch, True)
    assert resolve_extract_precision("auto", "cpu") == "bf16"
    assert resolve_extract_precision("32", "cpu") == "32" and resolve_extract_precision("16", "cuda:0") == "16"
    with pytest.raises(ValueError, match="needs a GPU"):
        resolve_extract_precision("16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_extract_precision("fp8", "cpu")


def test_bf16_features_close_to_official_fp32(official, fixtures_dir):
    """bf16 within cosine 0.999 of the official float32 features (per token and pooled), returned as float32;
    "32" stays the official result."""
    model, x = official
    seq, pooled = np.load(fixtures_dir / "features_seq.npy"), np.load(fixtures_dir / "features_pooled.npy")
    for precision in ("bf16", "auto"):
        s = model.extract_features(x, keep_seq=True, precision=precision)
        p = model.extract_features(x, keep_seq=False, precision=precision)
        assert s.dtype == p.dtype == torch.float32
        assert _cos(s, seq) >= 0.999 and _cos(p, pooled) >= 0.999
    assert not np.allclose(model.extract_features(x, keep_seq=False, precision="bf16").numpy(), pooled, atol=1e-5)
    assert np.allclose(model.extract_features(x, keep_seq=False, precision="32").numpy(), pooled, atol=1e-4)


def test_pooling_and_final_norm_stay_float32_under_autocast(official):
    """Under a bf16 autocast the encoder pools and norms in float32: equal to the float32 norm of the float32
    mean of its bf16 block outputs."""
    model, x = official
    enc = model.encoder
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = enc.extract_features(x, keep_seq=False)
        emb = enc.embed(x)
        for block in enc.blocks:
            emb = block(emb)
    assert pooled.dtype == torch.float32
    assert torch.equal(pooled, enc.norm(emb.float().mean(1)))


def test_extract_video_takes_precision(fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt", full_model=False)
    video = fixtures_dir / "cropped01.mp4"
    ref = np.load(fixtures_dir / "cropped01.features.npy")
    bf16 = model.extract_video(video, precision="bf16").numpy()
    assert bf16.shape == ref.shape and _cos(bf16, ref) >= 0.999 and not np.allclose(bf16, ref, atol=1e-5)
    assert np.allclose(model.extract_video(video, precision="32").numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError, match="needs a GPU"):
        model.extract_video(video, precision="16")


@pytest.fixture()
def tiny_ckpt(tmp_path):
    path = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    Marlin(tiny_config(), full_model=False).save(path)
    video = tmp_path / "in" / "v.mp4"
    video.parent.mkdir()
    write_video(video, np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), fps=25)
    return path, video


def _extract(ckpt, video, out, *extra):
    return main(["extract", str(video), "--checkpoint", str(ckpt), "--out", str(out), *extra])


def test_marlin_extract_records_the_resolved_precision(tiny_ckpt, tmp_path, monkeypatch, capsys):
    ckpt, video = tiny_ckpt
    feats = {}
    for precision, native, recorded in (("32", True, "32"), ("bf16", False, "bf16"), ("auto", True, "bf16"),
                                        ("auto", False, "32")):
        _cpu_bf16(monkeypatch, native)
        out = tmp_path / f"out_{precision}_{native}"
        assert _extract(ckpt, video, out, "--precision", precision) == 0
        record = json.loads((out / "features.json").read_text())
        assert record["precision"] == recorded and record["encoder"]["weights_sha256"]
        feats[precision, native] = np.load(out / "v.npy")
    assert not np.allclose(feats["32", True], feats["bf16", False], atol=1e-6)  # bf16 really ran
    assert np.array_equal(feats["32", True], feats["auto", False])
    assert np.array_equal(feats["bf16", False], feats["auto", True])
    # a folder of float32 features is not completed in bf16 (nor with other windows), nor a bare one claimed
    capsys.readouterr()
    assert _extract(ckpt, video, tmp_path / "out_32_True", "--precision", "bf16", "--overwrite") == 2
    assert "precision: cached '32', needed 'bf16'" in capsys.readouterr().err
    assert _extract(ckpt, video, tmp_path / "out_32_True", "--stride", "4") == 2
    (tmp_path / "out_32_True" / "features.json").unlink()
    assert _extract(ckpt, video, tmp_path / "out_32_True") == 2
    assert "without a features.json record" in capsys.readouterr().err
    assert _extract(ckpt, video, tmp_path / "o16", "--precision", "16") == 2
    assert "needs a GPU" in capsys.readouterr().err


def test_feature_cache_is_keyed_by_the_extraction_precision(tiny_ckpt, tmp_path, monkeypatch):
    """A cache made in float32 is not reused by a bf16 run (nor the other way): each gets its own folder and
    computes its features in the precision its record names; `auto` is recorded resolved."""
    from marlin.downstream.config import load_run_config
    from marlin.downstream.datasets.base import Sample
    from marlin.downstream.features import dataset_features, feature_cache, run_record

    ckpt, video = tiny_ckpt
    base = {"dataset": "csv", "root": str(video.parent), "encoder": {"model": None, "weights": str(ckpt)},
            "windows": {"sample_rate": 1, "stride": 4}}
    records = {p: run_record(load_run_config({**base, "extract_precision": p})) for p in ("32", "bf16")}
    assert records["32"]["precision"] == "32" and records["bf16"]["precision"] == "bf16"
    _cpu_bf16(monkeypatch, True)
    assert run_record(load_run_config({**base, "extract_precision": "auto"})) == records["bf16"]
    _cpu_bf16(monkeypatch, False)
    assert run_record(load_run_config({**base, "extract_precision": "auto"})) == records["32"]

    model = Marlin.from_file(None, ckpt, full_model=False)
    samples = [Sample("v", video, 0)]
    folders = {p: feature_cache(tmp_path / "features", r) for p, r in records.items()}
    assert folders["32"] != folders["bf16"]
    feats = {p: dataset_features(samples, f, model, sample_rate=1, stride=4, progress=False)[0]["v"]
             for p, f in folders.items()}
    assert np.allclose(feats["32"], model.extract_video(video, sample_rate=1, stride=4).numpy(), atol=1e-6)
    assert np.array_equal(feats["bf16"], model.extract_video(video, sample_rate=1, stride=4,
                                                             precision="bf16").numpy())
    assert not np.allclose(feats["32"], feats["bf16"], atol=1e-6)
    with pytest.raises(ValueError, match="extract_precision"):
        load_run_config({**base, "extract_precision": "16"})


def test_a_record_without_precision_is_float32(tmp_path):
    """Records written before precision was recorded hold float32 features: reused by float32 runs only."""
    from marlin.downstream.datasets.base import DatasetError
    from marlin.downstream.features import check_record
    from marlin.extract import features_record

    record = features_record({"weights_sha256": "ab"}, 2, 16, False)
    (tmp_path / "features.json").write_text(json.dumps({k: v for k, v in record.items() if k != "precision"}))
    check_record(tmp_path, record)
    with pytest.raises(DatasetError, match="precision: cached '32', needed 'bf16'"):
        check_record(tmp_path, {**record, "precision": "bf16"})



def test_auto_is_float32_on_gpus_without_native_bf16(monkeypatch):
    """A V100 / T4 emulates bf16 (slower than float32): `auto` must not pick it there, nor in pretraining."""
    from marlin.precision import resolve_extract_precision
    from marlin.train.runner import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert resolve_extract_precision("auto", "cuda") == "32"
    assert resolve_precision("auto", on_gpu=True) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_extract_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", on_gpu=True) == "bf16-mixed"
