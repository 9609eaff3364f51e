"""Training: a tiny model overfits one batch; resume continues the same trajectory; exports load in extract."""
import copy

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers import TINY_PRETRAIN, make_items
from marlin.data.clips import collate
from marlin.train import pretrain, pretrain_config
from marlin.train.datamodule import PretrainData
from marlin.train.history import read_history
from marlin.train.module import PretrainModule



def test_overfits_a_fixed_batch(tmp_path):
    cfg = pretrain_config(copy.deepcopy(TINY_PRETRAIN))
    data = PretrainData(make_items(tmp_path, n=2), cfg)
    batch = collate([data._dataset(data.train_items, 0)[p] for p in range(2)])
    torch.manual_seed(0)
    module = PretrainModule(cfg, global_batch=2, total_steps=60, warmup_steps=0)
    module.lrs = (3e-3, 3e-3, 3e-3)
    first = module.model(batch["video"].float() / 255, batch["mask"]).detach()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    losses = []
    module._record = lambda terms, lr: losses.append(terms["rec_loss"].item())
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 60, batch_size=None))
    assert len(losses) == 60 and first.shape == (2, 48, 384)
    assert losses[-1] < 0.35 * losses[0], losses[::10]


def _run(data, out, **kw):
    args = dict(max_steps=4, schedule_steps=4, progress=False, devices=1, accelerator="cpu")
    args.update(kw)
    return pretrain(copy.deepcopy(TINY_PRETRAIN), data, out, **args)


def test_resume_continues_the_same_trajectory_and_exports_load(tmp_path):
    data = make_items(tmp_path / "data", n=3)
    full = _run(data, tmp_path / "full", val_every=2)
    assert full.iterations == 4 and full.stopped_by == "max_steps"
    first = _run(data, tmp_path / "split", max_steps=2, tensorboard=False)
    assert first.iterations == 2 and first.checkpoint.is_file()
    resumed = _run(data, tmp_path / "split", resume=first.checkpoint, tensorboard=False)
    assert resumed.iterations == 4
    a = {r["iteration"]: r for r in full.history if r["kind"] == "train"}
    b = {r["iteration"]: r for r in read_history(resumed.history_csv) if r["kind"] == "train"}
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    for it in (3, 4):
        for k in ("rec_loss", "d_loss", "adv_loss", "lr"):
            assert abs(a[it][k] - b[it][k]) <= 1e-6 * max(1.0, abs(a[it][k])), (it, k, a[it][k], b[it][k])
    assert a[4]["rec_loss"] != a[1]["rec_loss"]
    # logs and pictures
    assert (tmp_path / "full" / "tensorboard").is_dir() and full.mask_picture.is_file()
    assert [p.name for p in full.reconstructions] == ["step0000002.png", "step0000004.png", "final.png"]
    assert any(r["kind"] == "val" for r in full.history)
    # exports: ours, official encoder/full layouts, and the YAML that rebuilds the model
    from marlin.models import Marlin

    ex = full.exports
    ours = Marlin.from_file(None, ex["safetensors"])
    enc = Marlin.from_file(ex["yaml"], ex["encoder_pt"])
    whole = Marlin.from_file(ex["yaml"], ex["full_pt"])
    assert enc.decoder is None and whole.decoder is not None
    x = torch.rand(1, 3, 8, 32, 32)
    torch.testing.assert_close(ours.extract_features(x, False), enc.extract_features(x, False))
    ckpt = torch.load(full.checkpoint, map_location="cpu", weights_only=True)
    assert len(ckpt["optimizer_states"]) == 2 and len(ckpt["lr_schedulers"]) == 2
    assert ckpt["marlin_pretrain"]["iteration"] == 4
    torch.testing.assert_close(ckpt["state_dict"]["model.encoder.norm.weight"], ours.encoder.norm.weight)


def test_curves_are_drawn_at_every_validation_and_at_the_end(tmp_path, monkeypatch):
    """curves.png beside history.csv: redrawn after each validation (a long run shows its course so far) and
    once more at the end, from every row."""
    import cv2

    import marlin.train.module as module

    drawn = []
    real = module.plot_history
    monkeypatch.setattr(module, "plot_history",
                        lambda rows, path: drawn.append(max(r["iteration"] for r in rows)) or real(rows, path))
    result = _run(make_items(tmp_path / "data", n=3), tmp_path / "run", val_every=2, tensorboard=False)
    assert drawn == [2, 4]
    assert result.curves == tmp_path / "run" / "curves.png"
    assert cv2.imread(str(result.curves)).shape == (360, 1400, 3)


def test_exported_encoder_runs_in_marlin_extract(tmp_path):
    from marlin.cli import main
    from marlin.video import write_video

    data = make_items(tmp_path / "data", n=2)
    res = _run(data, tmp_path / "run", max_steps=1, schedule_steps=None, tensorboard=False, mask_picture=False)
    video = tmp_path / "videos" / "face.mp4"
    video.parent.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    write_video(video, frames, fps=25)
    assert main(["extract", str(video.parent), "--out", str(tmp_path / "feats"), "--model", str(res.exports["yaml"]),
                 "--checkpoint", str(res.exports["encoder_pt"])]) == 0
    feats = np.load(tmp_path / "feats" / "face.npy")
    assert feats.shape == (1, 32) and np.isfinite(feats).all()
    assert main(["extract", str(video), "--out", str(tmp_path / "feats2"),
                 "--checkpoint", str(res.exports["safetensors"])]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "feats2" / "face.npy"), feats, atol=1e-5)


def test_bf16_mixed_on_cpu_trains_and_exports_float32(tmp_path):
    from safetensors.torch import load_file

    res = _run(make_items(tmp_path / "data", n=2), tmp_path / "run", max_steps=2, schedule_steps=None,
               tensorboard=False, mask_picture=False, precision="bf16-mixed")
    rows = [r for r in res.history if r["kind"] == "train"]
    assert [r["iteration"] for r in rows] == [1, 2] and all(np.isfinite(r["rec_loss"]) for r in rows)
    assert {t.dtype for t in load_file(res.exports["safetensors"]).values()} == {torch.float32}


def test_part_weighted_run_trains(tmp_path):
    res = _run(make_items(tmp_path / "data", n=2), tmp_path / "run", max_steps=2, schedule_steps=None,
               tensorboard=False, mask_picture=False, part_weight=5.0)
    rows = [r for r in res.history if r["kind"] == "train"]
    assert [r["iteration"] for r in rows] == [1, 2] and all(np.isfinite(r["rec_loss"]) for r in rows)
    assert all(r["mask_fallback"] == 0 for r in rows)


def test_precision_auto_uses_bf16_only_where_native(monkeypatch):
    from marlin.train.runner import resolve_precision

    assert resolve_precision("32-true", on_gpu=True) == "32-true"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert resolve_precision("auto", on_gpu=False) == "32-true"
    assert resolve_precision("auto", on_gpu=True) == "bf16-mixed"  # a GPU without CUDA (MPS)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", on_gpu=False) == "bf16-mixed"


def _mock_cuda(monkeypatch, major: int, has_argument: bool):
    """A CUDA device of compute capability `major`.x; `torch.cuda.is_bf16_supported` as torch >= 2.3 has it
    (True when emulated unless including_emulation=False) or as torch 2.1 / 2.2 have it (no argument)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    if has_argument:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True:
                            major >= 8 or including_emulation)
    else:
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: major >= 8)


@pytest.mark.parametrize("has_argument", [True, False])
def test_gpu_default_precision_is_bf16_only_where_native(monkeypatch, has_argument):
    """No precision given on a GPU means `auto`: bf16-mixed on Ampere and later, float32 on a V100 / T4 (bf16
    emulated), with or without the `including_emulation` argument of `torch.cuda.is_bf16_supported`."""
    from marlin.precision import resolve_extract_precision
    from marlin.train.runner import resolve_precision

    for major, expected in ((7, "32-true"), (8, "bf16-mixed"), (9, "bf16-mixed")):
        _mock_cuda(monkeypatch, major, has_argument)
        assert resolve_precision(None, on_gpu=True) == expected, major
        assert resolve_precision("auto", on_gpu=True) == expected, major
        assert resolve_extract_precision("auto", "cuda") == ("bf16" if expected == "bf16-mixed" else "32")
    assert resolve_precision(None, on_gpu=False) == "32-true"


def test_unsupported_precision_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="precision 16-mixed is not supported"):
        _run(make_items(tmp_path / "data", n=2), tmp_path / "run", precision="16-mixed")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_init_from_official_lightning_checkpoint(fixtures_dir):
    from marlin.checkpoints import load_file, split_checkpoint
    from marlin.train.runner import load_init

    cfg = pretrain_config(fixtures_dir / "tiny.yaml")
    module = PretrainModule(cfg, global_batch=16, total_steps=10, warmup_steps=1)
    load_init(module, fixtures_dir / "tiny.ckpt")
    sd, critic_sd, _ = split_checkpoint(load_file(fixtures_dir / "tiny.ckpt"))
    own = module.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())
    assert all(torch.equal(module.critic.state_dict()[k], v) for k, v in critic_sd.items()) and critic_sd


def test_init_from_another_architecture_names_the_matching_preset(fixtures_dir, tmp_path):
    """`--init` with a ViT-S encoder into a tiny model: the error names the preset the file matches."""
    from marlin import Marlin
    from marlin.checkpoints import CheckpointError
    from marlin.train.runner import load_init

    Marlin("marlin_vit_small_ytf", full_model=False).export_official(tmp_path / "s.encoder.pt")
    module = PretrainModule(pretrain_config(fixtures_dir / "tiny.yaml"), global_batch=16, total_steps=10,
                            warmup_steps=1)
    with pytest.raises(CheckpointError, match=r"matches preset marlin_vit_small_ytf"):
        load_init(module, tmp_path / "s.encoder.pt")


def test_checkpoint_rename_is_fsynced(tmp_path, monkeypatch):
    """last.ckpt appears complete under its name, flushed to disk (file and folder) before and after the rename."""
    import os
    from types import SimpleNamespace

    from marlin.train.callbacks import save_run_checkpoint

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    trainer = SimpleNamespace(is_global_zero=True, strategy=SimpleNamespace(barrier=lambda name=None: None),
                              save_checkpoint=lambda p, weights_only=False: open(p, "wb").write(b"weights"))
    path = tmp_path / "checkpoints" / "last.ckpt"
    save_run_checkpoint(trainer, path)
    assert path.read_bytes() == b"weights" and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert events[:2] == ["fsync", "replace"] and events.count("fsync") == 2, events


def test_time_budget_is_agreed_every_sync_every_iterations(tmp_path):
    """The stop decision of `max_minutes` costs one broadcast per `sync_every` iterations, not one per step."""
    from types import SimpleNamespace

    from marlin.train.callbacks import RunControl

    calls = []
    strategy = SimpleNamespace(broadcast=lambda obj, src: (calls.append(obj), obj)[1])
    trainer = SimpleNamespace(strategy=strategy, should_stop=False)
    control = RunControl(tmp_path / "last.ckpt", 1, None, 1e-9, ckpt_every=0, sync_every=10)
    for it in range(1, 21):
        control.on_train_batch_end(trainer, SimpleNamespace(iteration=it), None, None, it - 1)
        if it < 10:
            assert not trainer.should_stop
    assert calls == ["max_minutes", "max_minutes"] and trainer.should_stop and control.stopped_by == "max_minutes"


def test_curves_leave_the_plotting_backend_alone(tmp_path):
    """The drawings make their figures without pyplot: a notebook's backend is not switched under it."""
    import matplotlib

    from marlin.curves import plot_fit, plot_history, plot_steps

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_history([{"kind": "train", "iteration": 1, "rec_loss": 0.5, "lr": 1e-3}], tmp_path / "a.png")
        plot_fit([{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "lr": 1e-3, "acc": 0.5}], tmp_path / "b.png",
                 "acc", 1)
        plot_steps([0.5, 0.4], tmp_path / "c.png")
        assert matplotlib.get_backend() == "svg"
        assert all((tmp_path / f"{n}.png").read_bytes()[:4] == b"\x89PNG" for n in "abc")
    finally:
        matplotlib.use(before)
