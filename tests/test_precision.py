"""Precision: `auto | 32 | bf16 | 16` through every entry point (API, `marlin extract`, `marlin predict`, the
downstream feature cache and model, the deploy runtimes, demo / ablate settings, pretraining's Lightning names),
`auto` per hardware, the precision recorded with the outputs, bf16 close to float32. One set of names and one
resolution (`marlin.precision.Precision`): each test of a removed value set checks its behaviour there."""
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config

from marlin import Marlin
from marlin.cli import main
from marlin.precision import Precision
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
    _cpu_bf16(monkeypatch, False)
    assert Precision.resolve("auto", "cpu") is Precision.FP32
    assert Precision.resolve("auto", "cuda") is Precision.BF16
    _cpu_bf16(monkeypatch, True)
    assert Precision.resolve("auto", "cpu") is Precision.BF16
    assert Precision.resolve("32", "cpu") is Precision.FP32 and Precision.resolve("16", "cuda:0") is Precision.FP16
    with pytest.raises(ValueError, match="needs a GPU"):
        Precision.resolve("16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of auto, 32, bf16, 16, got 'fp8'"):
        Precision.resolve("fp8", "cpu")


def test_a_precision_names_what_records_store_and_lightning_runs():
    """`.name` is what records store (unchanged), `.lightning` the runner's Lightning name, `.autocast` the dtype."""
    assert [p.name for p in (Precision.FP32, Precision.BF16, Precision.FP16)] == ["32", "bf16", "16"]
    assert [p.lightning for p in (Precision.FP32, Precision.BF16, Precision.FP16)] == ["32-true", "bf16-mixed",
                                                                                          "16-mixed"]
    assert Precision.named("bf16-mixed") is Precision.BF16 and str(Precision.BF16) == "bf16"
    with pytest.raises(ValueError, match="not a resolved precision"):
        Precision.named("auto")
    with Precision.BF16.autocast("cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
    with Precision.FP32.autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


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
    from marlin.train.runner import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert Precision.resolve("auto", "cuda") is Precision.FP32
    assert resolve_precision("auto", on_gpu=True) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert Precision.resolve("auto", "cuda") is Precision.BF16
    assert resolve_precision("auto", on_gpu=True) == "bf16-mixed"


# ---- one test per removed value set: its behaviour at the one place that remains ------------------------------
def _one_error_line(err: str, command: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"marlin {command}: error:") and "Traceback" not in err, err
    return lines[0]


def test_extract_and_predict_flags_take_the_names_and_rules_of_marlin_precision(tiny_ckpt, tmp_path, capsys):
    """`marlin extract` / `marlin predict --precision`: the choices are `REQUESTS` (no set of their own), and a
    precision the device cannot run ends the command with one line, exit 2, before any model or run is read."""
    import argparse

    from marlin.cli import extract, predict
    from marlin.precision import REQUESTS

    for command in (extract, predict):
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        assert next(a for a in parser._actions if a.dest == "precision").choices is REQUESTS
    ckpt, video = tiny_ckpt
    capsys.readouterr()
    assert _extract(ckpt, video, tmp_path / "o16", "--precision", "16") == 2
    assert "--precision 16: precision '16' (float16 autocast) needs a GPU" in _one_error_line(
        capsys.readouterr().err, "extract")
    assert not (tmp_path / "o16").exists()
    assert main(["predict", str(video), "--run", str(tmp_path / "no_run"), "--out", str(tmp_path / "p"),
                 "--precision", "16", "--device", "cpu"]) == 2
    assert "--precision 16" in _one_error_line(capsys.readouterr().err, "predict")


def test_marlin_extract_resolves_once_and_inner_functions_never_again(tiny_ckpt, tmp_path, monkeypatch):
    """From the flag to the autocast: one `Precision.resolve` (the CLI's); `video_features`, `backend_model`,
    `Marlin.extract_features` take the resolved value as it is."""
    ckpt, video = tiny_ckpt
    calls = []
    resolve = Precision.resolve.__func__

    def counted(cls, *args, **kwargs):
        calls.append(args)
        return resolve(cls, *args, **kwargs)

    monkeypatch.setattr(Precision, "resolve", classmethod(counted))
    _cpu_bf16(monkeypatch, True)
    assert _extract(ckpt, video, tmp_path / "out", "--precision", "auto") == 0
    assert len(calls) == 1 and calls[0][0] == "auto"
    assert json.loads((tmp_path / "out" / "features.json").read_text())["precision"] == "bf16"
    # the API: a name is resolved once at the public entry, a Precision not at all
    model = Marlin.from_file(None, ckpt, full_model=False)
    calls.clear()
    ref = model.extract_video(video, precision="bf16")
    assert len(calls) == 1
    calls.clear()
    assert torch.equal(model.extract_video(video, precision=Precision.BF16), ref) and not calls
    assert np.array_equal(ref.numpy(), np.load(tmp_path / "out" / "v.npy"))


def test_downstream_config_takes_its_allowed_names_from_marlin_precision():
    """extract_precision: `ANY_DEVICE` (no float16 cache); fine-tuning precision: `TRAINABLE` (was checked only
    when the fine-tuning model was built)."""
    from marlin.config import ConfigError
    from marlin.downstream.config import load_run_config

    base = {"dataset": "csv", "root": "x"}
    for key, bad, good in (("extract_precision", "16", "auto"), ("precision", "auto", "bf16"),
                           ("precision", "16", "32"), ("extract_precision", "fp32", "bf16")):
        with pytest.raises(ConfigError, match=f"{key} must be one of"):
            load_run_config({**base, key: bad})
        assert getattr(load_run_config({**base, key: good}), key) == good


def test_downstream_model_runs_its_encoder_in_the_resolved_precision(tmp_path):
    """`VideoClassifier` takes a Precision (bf16: the encoder under autocast, the head float32); a fine-tuning
    checkpoint's recorded name comes back as that Precision."""
    from marlin.downstream.model import VideoClassifier, classifier_from_checkpoint, save_downstream_checkpoint
    from marlin.models.encoder import MarlinEncoder

    torch.manual_seed(0)
    cfg = tiny_config()
    model = VideoClassifier(MarlinEncoder(cfg), 3, Precision.BF16).eval()
    x = torch.rand(2, 3, cfg.n_frames, cfg.img_size, cfg.img_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feats = model.encoder.extract_features(x, keep_seq=False)
    with torch.no_grad():
        out = model(x)
        assert out.dtype == torch.float32 and torch.equal(out, model.head(feats))
        fp32 = VideoClassifier(model.encoder, 3, Precision.FP32)
        fp32.head = model.head
        assert not torch.allclose(fp32(x), out, atol=1e-6)  # bf16 really ran
    path = tmp_path / "model.safetensors"
    save_downstream_checkpoint(path, model.state_dict(), {"mode": "finetune", "marlin_config": cfg.to_dict(),
                                                         "run": {"precision": "bf16"}})
    assert classifier_from_checkpoint(path)[0].precision is Precision.BF16


def test_deploy_runtimes_rules_live_in_precision_resolve(monkeypatch):
    """What `deploy.resolve_backend_precision` decided: onnxruntime float32 only, OpenVINO bf16 where its CPU plugin
    computes it, both on the CPU only."""
    import marlin.runtimes as runtimes
    from marlin.deploy import resolve_backend_precision

    monkeypatch.setattr(runtimes, "require_backend", lambda backend, what=None: None)  # the runtime itself not needed
    assert Precision.resolve("auto", "cpu", "onnxruntime") is Precision.FP32
    with pytest.raises(ValueError, match="onnxruntime backend runs float32 only"):
        Precision.resolve("bf16", "cpu", "onnxruntime")
    with pytest.raises(ValueError, match="runs on the CPU"):
        Precision.resolve("32", "cuda", "onnxruntime")
    for native, auto in ((True, Precision.BF16), (False, Precision.FP32)):
        monkeypatch.setattr(runtimes, "openvino_bf16", lambda: native)
        assert Precision.resolve("auto", "cpu", "openvino") is auto
    with pytest.raises(ValueError, match="OpenVINO computes bf16 only"):
        Precision.resolve("bf16", "cpu", "openvino")
    with pytest.raises(ValueError, match="needs a GPU"):
        Precision.resolve("16", "cpu", "openvino")
    with pytest.raises(ValueError, match="precision must be one of"):
        Precision.resolve("int8", "cpu", "openvino")
    assert resolve_backend_precision("onnxruntime", "auto", "cpu") == "32"


def test_demo_settings_offer_the_precisions_of_every_device():
    from marlin.apps.demo import DemoSettings
    from marlin.precision import ANY_DEVICE

    for bad in ("16", "x"):
        with pytest.raises(ValueError, match=f"precision must be one of auto, 32, bf16, got '{bad}'"):
            DemoSettings(precision=bad)
    assert all(DemoSettings(precision=p).precision == p for p in ANY_DEVICE)


def test_ablate_refuses_float16_with_downstream_probes_instead_of_probing_in_float32():
    """ablate turned precision 16 into 32 for its --downstream probes without a word; now it says so at once."""
    from marlin.apps.ablate import AblateSettings
    from marlin.errors import MarlinError

    with pytest.raises(MarlinError, match="precision 16 with --downstream"):
        AblateSettings(precision="16", downstream=["celebvhq_appearance"])
    with pytest.raises(ValueError, match="precision must be one of"):
        AblateSettings(precision="fp16")
    assert AblateSettings(precision="16").precision == "16"  # on a GPU, without downstream probes
    assert AblateSettings(precision="bf16", downstream=["celebvhq_appearance"]).precision == "bf16"


def test_pretraining_lightning_names_are_derived_from_precision():
    """The runner's Lightning names are `Precision.lightning`; the pretrain config takes `PRETRAIN_REQUESTS` and
    refuses float16 (and names Lightning has but training does not support) when it is made."""
    from marlin.config import ConfigError
    from marlin.train import pretrain_config
    from marlin.train.runner import resolve_precision

    assert resolve_precision(None, on_gpu=False) == Precision.FP32.lightning
    assert resolve_precision("bf16", on_gpu=False) == resolve_precision("bf16-mixed", on_gpu=False) == "bf16-mixed"
    assert resolve_precision("32", on_gpu=True) == "32-true"
    for bad in ("16-mixed", "16", "bf16-true"):
        with pytest.raises(ConfigError, match=f"precision {bad} is not supported"):
            pretrain_config("tiny_cpu", values={"trainer.precision": bad})
    assert pretrain_config("tiny_cpu", values={"trainer.precision": "bf16-mixed"}).trainer.precision == "bf16-mixed"
