"""Deploy anywhere (issue 28): `marlin convert --to onnx|openvino [--full]` exports that run in onnxruntime /
OpenVINO within 1e-4 of torch and of the official outputs, the export's record checked before it runs, and the
extraction backends (`marlin extract --backend`, `extract_video(backend=)`) recorded and never mixed."""
import copy
import json
import shutil
import sys

import numpy as np
import pytest
import torch

from marlin import Marlin
from marlin.cli import main
from marlin.deploy import RUNTIME_MODELS

TOL = 1e-4
TARGET_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino"}


@pytest.fixture(scope="module")
def official(fixtures_dir):
    clip = torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255
    mask = torch.from_numpy(np.load(fixtures_dir / "mask.npy"))
    reconstruction = np.concatenate([np.load(fixtures_dir / f"reconstruction.part{i}.npy") for i in (0, 1)], 1)
    return {"clip": clip, "mask": mask, "seq": np.load(fixtures_dir / "features_seq.npy"),
            "pooled": np.load(fixtures_dir / "features_pooled.npy"), "reconstruction": reconstruction,
            "model": Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt").eval()}


@pytest.fixture(scope="module")
def exports(fixtures_dir, tmp_path_factory):
    """The official tiny fixture exported by `marlin convert`: (target, full) -> folder."""
    root = tmp_path_factory.mktemp("exports")
    out = {}
    for to in ("onnx", "openvino"):
        for full in (False, True):
            folder = root / f"{to}{'-full' if full else ''}"
            source = fixtures_dir / ("tiny.full.pt" if full else "tiny.encoder.pt")
            assert main(["convert", str(source), str(folder), "--to", to, "--model", str(fixtures_dir / "tiny.yaml"),
                         *(["--full"] if full else [])]) == 0
            out[to, full] = folder
    return out


@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_export_matches_extract_features_and_the_official_features(to, exports, official, fixtures_dir):
    from marlin.checkpoints import file_sha256
    from marlin.deploy import EXPORT_RECORD, load_export

    runner = load_export(exports[to, False])
    assert runner.backend == TARGET_BACKEND[to]
    model, clip = official["model"], official["clip"]
    tokens, pooled = runner.extract_features(clip, keep_seq=True), runner.extract_features(clip, keep_seq=False)
    assert np.abs(tokens.numpy() - official["seq"]).max() < TOL
    assert np.abs(pooled.numpy() - official["pooled"]).max() < TOL
    assert (tokens - model.extract_features(clip, keep_seq=True)).abs().max() < TOL
    assert (pooled - model.extract_features(clip, keep_seq=False)).abs().max() < TOL
    # the batch is dynamic: three different clips in one call, each as alone
    batch = torch.cat([clip, clip.flip(-1), 1 - clip])
    assert (runner.extract_features(batch, keep_seq=False) - model.extract_features(batch, keep_seq=False)
            ).abs().max() < TOL
    # the folder carries the config, the source's fingerprint (as `marlin extract` records it), opset and parity
    record = json.loads((exports[to, False] / EXPORT_RECORD).read_text())
    assert record["config"] == model.config.to_dict() and record["opset"] == 17 and record["parts"] == "encoder"
    assert record["encoder"]["weights_sha256"] == file_sha256(fixtures_dir / "tiny.encoder.pt")
    assert set(record["outputs"]) == {"tokens", "pooled"} and record["inputs"]["clip"][1][0] == "batch"
    assert max(record["parity"]["max_abs_diff"].values()) < TOL


def test_onnx_graph_uses_standard_operators_only(exports):
    import onnx

    graph = onnx.load(str(exports["onnx", False] / "model.onnx"))
    assert {op.domain for op in graph.opset_import} <= {"", "ai.onnx"}
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}
    assert graph.opset_import[0].version == 17


@pytest.mark.parametrize("to", ["onnx", "openvino"])
def test_full_export_reproduces_the_official_reconstruction(to, exports, official):
    from marlin.deploy import load_export

    runner = load_export(exports[to, True])
    rec = runner.reconstruct(official["clip"], official["mask"]).numpy()
    assert rec.shape == official["reconstruction"].shape
    assert np.abs(rec - official["reconstruction"]).max() < TOL
    # another number of visible tokens and a batch of two: the masked count is dynamic too
    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(2, 1568, dtype=torch.bool).scatter_(
        1, torch.stack([torch.randperm(1568, generator=g)[:400] for _ in range(2)]), True)
    clip = torch.cat([official["clip"], 1 - official["clip"]])
    with torch.no_grad():
        assert (runner.reconstruct(clip, mask) - official["model"](clip, mask)).abs().max() < TOL
    with pytest.raises(Exception, match="reconstructs"):
        runner.extract_features(clip)


def test_the_export_record_is_checked(exports, tmp_path, fixtures_dir, capsys):
    from marlin.deploy import load_export
    from marlin.errors import MarlinError

    bad = tmp_path / "bad"
    shutil.copytree(exports["onnx", False], bad)
    with open(bad / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(MarlinError, match="SHA-256"):
        load_export(bad)
    video = fixtures_dir / "cropped05.mp4"
    assert main(["extract", str(video), "--checkpoint", str(bad), "--backend", "onnxruntime",
                 "--out", str(tmp_path / "f")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.onnx" in err[0] and "SHA-256" in err[0]
    shutil.copy(exports["onnx", False] / "model.onnx", bad / "model.onnx")  # the graph again, its record edited
    record = json.loads((bad / "marlin_export.json").read_text())
    record["config"]["img_size"] = 112
    (bad / "marlin_export.json").write_text(json.dumps(record))
    with pytest.raises(MarlinError, match="the record does not belong"):
        load_export(bad)
    (bad / "marlin_export.json").unlink()
    with pytest.raises(MarlinError, match="not a MARLIN export"):
        load_export(bad)
    with pytest.raises(MarlinError, match="runs in openvino"):  # an IR is not onnxruntime's
        load_export(exports["openvino", False], backend="onnxruntime")


def test_convert_refuses_what_it_cannot_export(fixtures_dir, exports, tmp_path, capsys):
    yaml, enc = str(fixtures_dir / "tiny.yaml"), str(fixtures_dir / "tiny.encoder.pt")
    assert main(["convert", enc, str(tmp_path / "x"), "--to", "onnx", "--full", "--model", yaml]) == 2
    assert "--full needs the decoder" in capsys.readouterr().err
    assert main(["convert", enc, str(exports["onnx", False]), "--to", "onnx", "--model", yaml]) == 2
    assert "not empty" in capsys.readouterr().err
    assert main(["convert", enc, str(tmp_path / "y.safetensors"), "--to", "safetensors", "--full",
                 "--model", yaml]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y.safetensors").exists()


def _extract(fixtures_dir, out, *extra, checkpoint=None, video="cropped01.mp4"):
    return main(["extract", str(fixtures_dir / video), "--model", str(fixtures_dir / "tiny.yaml"),
                 "--checkpoint", str(checkpoint or fixtures_dir / "tiny.encoder.pt"), "--out", str(out), *extra])


def test_marlin_extract_backends_match_the_official_features_and_are_recorded(fixtures_dir, exports, tmp_path,
                                                                               capsys):
    official = np.load(fixtures_dir / "cropped01.features.npy")
    records = {}
    for backend in ("torch", "onnxruntime", "openvino"):
        out = tmp_path / backend
        assert _extract(fixtures_dir, out, "--backend", backend) == 0
        assert np.abs(np.load(out / "cropped01.npy") - official).max() < TOL
        records[backend] = json.loads((out / "features.json").read_text())
        assert records[backend]["backend"] == backend
    # an exported folder runs as its source checkpoint did, and is recorded with the source's identity
    out = tmp_path / "from-export"
    assert main(["extract", str(fixtures_dir / "cropped01.mp4"), "--checkpoint", str(exports["openvino", False]),
                 "--backend", "openvino", "--out", str(out)]) == 0
    assert np.abs(np.load(out / "cropped01.npy") - official).max() < TOL
    assert json.loads((out / "features.json").read_text()) == records["openvino"]
    assert main(["extract", str(fixtures_dir / "cropped01.mp4"), "--checkpoint", str(exports["onnx", True]),
                 "--backend", "onnxruntime", "--out", str(tmp_path / "full")]) == 2  # a reconstruction graph
    assert not (tmp_path / "full" / "features.json").exists()
    # backends are never mixed in one folder, not even with --overwrite
    capsys.readouterr()
    assert _extract(fixtures_dir, tmp_path / "onnxruntime", "--backend", "torch", "--overwrite") == 2
    assert "backend: cached 'onnxruntime', needed 'torch'" in capsys.readouterr().err
    assert _extract(fixtures_dir, tmp_path / "torch", "--backend", "openvino", video="cropped05.mp4") == 2
    assert not (tmp_path / "torch" / "cropped05.npy").exists()
    # onnxruntime has no bf16 path: refused before anything runs
    assert _extract(fixtures_dir, tmp_path / "bf16", "--backend", "onnxruntime", "--precision", "bf16") == 2
    assert "float32 only" in capsys.readouterr().err and not (tmp_path / "bf16" / "features.json").exists()


def test_a_record_without_backend_is_torch():
    from marlin.extract import features_record, record_differences

    record = features_record({"weights_sha256": "ab"}, 2, 16, False)
    assert record["backend"] == "torch"
    old = {k: v for k, v in record.items() if k != "backend"}
    assert record_differences(old, record) == []
    assert record_differences(old, {**record, "backend": "onnxruntime"}) == [
        "backend: cached 'torch', needed 'onnxruntime'"]


def test_extract_video_backend_exports_once_per_weights(fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt")
    video = fixtures_dir / "cropped05.mp4"
    reference = model.extract_video(video)
    for backend in ("onnxruntime", "openvino"):
        feats = model.extract_video(video, backend=backend)
        assert feats.shape == reference.shape and (feats - reference).abs().max() < TOL
    runner = RUNTIME_MODELS[model]["onnxruntime", "32"][1]
    model.extract_video(video, backend="onnxruntime")
    assert RUNTIME_MODELS[model]["onnxruntime", "32"][1] is runner  # same weights: not exported again
    with torch.no_grad():
        model.encoder.norm.bias.add_(1.0)  # in place, as an optimiser step
    changed = model.extract_video(video, backend="onnxruntime")
    assert RUNTIME_MODELS[model]["onnxruntime", "32"][1] is not runner
    assert (changed - model.extract_video(video)).abs().max() < TOL and (changed - reference).abs().max() > 0.5
    with pytest.raises(ValueError, match="backend must be"):
        model.extract_video(video, backend="tensorrt")
    twin = copy.deepcopy(model)  # the runtime sessions stay out of the model: it still copies
    assert torch.equal(twin.extract_video(video), model.extract_video(video)) and twin not in RUNTIME_MODELS


@pytest.mark.parametrize("runtime, extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_a_missing_runtime_is_named_with_exit_3(runtime, extra, fixtures_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, runtime, None)  # `import runtime` now fails as if it were not installed
    assert _extract(fixtures_dir, tmp_path / "f", "--backend", runtime, video="cropped05.mp4") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"'{extra}' extra" in err[0] and f"facemarlin-toolkit[{extra}]" in err[0]
    assert not (tmp_path / "f" / "features.json").exists()
    to = "onnx" if runtime == "onnxruntime" else "openvino"
    assert main(["convert", str(fixtures_dir / "tiny.encoder.pt"), str(tmp_path / "e"), "--to", to,
                 "--model", str(fixtures_dir / "tiny.yaml")]) == 3
    assert f"'{extra}' extra" in capsys.readouterr().err and not (tmp_path / "e").exists()


def test_an_export_that_leaves_torch_is_not_written(fixtures_dir, tmp_path, monkeypatch, capsys):
    import marlin.deploy

    monkeypatch.setattr(marlin.deploy, "PARITY_TOLERANCE", 0.0)  # float32 runtimes differ from torch by ~1e-6
    assert main(["convert", str(fixtures_dir / "tiny.encoder.pt"), str(tmp_path / "e"), "--to", "onnx",
                 "--model", str(fixtures_dir / "tiny.yaml")]) == 2
    assert "differs from torch by" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not list(tmp_path.iterdir())


def test_extract_parts_and_a_merge_equal_one_run(tmp_path, capsys):
    """`marlin extract --part i/N` on many machines, then `--merge`: the same files as one run (issue 28, 4)."""
    from helpers import tiny_config

    from marlin.video import write_video

    ckpt = tmp_path / "tiny.safetensors"
    torch.manual_seed(0)
    Marlin(tiny_config(), full_model=False).save(ckpt)
    videos = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for i in range(6):
        write_video(videos / f"sub{i % 2}" / f"v{i}.mp4", rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8))
    (videos / "bad.mp4").write_bytes(b"not a video")
    run = ["extract", str(videos), "--checkpoint", str(ckpt)]
    assert main([*run, "--out", str(tmp_path / "whole")]) == 1  # bad.mp4 fails, the rest is written
    parts = tmp_path / "parts"
    for i in range(2):
        assert main([*run, "--part", f"{i}/2", "--out", str(parts)]) in (0, 1)
    records = [json.loads((parts / f"extract.part-000{i}-of-0002.json").read_text()) for i in range(2)]
    assert all(r["names"] for r in records)  # both parts got videos
    assert main(["extract", "--merge", "--out", str(parts)]) == 1
    files = {p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file()}
    assert files == {p.relative_to(parts) for p in parts.rglob("*") if p.is_file() and ".part-" not in p.name}
    for f in files:
        if f.suffix == ".npy":
            assert np.array_equal(np.load(tmp_path / "whole" / f), np.load(parts / f))
        elif f.suffix == ".json":
            assert json.loads((tmp_path / "whole" / f).read_text()) == json.loads((parts / f).read_text())
    assert "bad.mp4" in (parts / "failed.txt").read_text()
    # an incomplete split is refused, naming the part
    (parts / "extract.part-0001-of-0002.json").unlink()
    capsys.readouterr()
    assert main(["extract", "--merge", "--out", str(parts)]) == 2
    assert "parts 1 of 2 are missing" in capsys.readouterr().err
