"""Lip-sync configuration sections (YAML, unknown keys, overrides, generated flags) and checkpoints in the toolkit's
container, with the older "marlin-lipsync/1" torch dicts still read."""
import inspect

import pytest
import torch

from marlin.checkpoints import CheckpointError, load_container
from marlin.config import ConfigError
from marlin.lipsync.config import GeneratorTrainConfig, LipsyncConfig, SyncTrainConfig, load_config
from marlin.lipsync.generator import Generator, GeneratorConfig
from marlin.lipsync.syncnet import SyncNet, SyncNetConfig
from marlin.lipsync.toy import write_toy_lrs2
from marlin.lipsync.train import load_lipsync_checkpoint, load_generator, load_syncnet, train_generator, train_syncnet

TINY_SYNC = SyncNetConfig(window=5, face_size=32, width=4, stages=3, embed_dim=16)
TINY_GEN = GeneratorConfig("cnn", 5, 32, width=4, audio_dim=16)


def test_yaml_sections_overrides_and_unknown_keys(tmp_path):
    (tmp_path / "ls.yaml").write_text("data:\n  root: LRS2\n  split: pretrain\ngenerator:\n  encoder: wav2lip\n"
                                      "training:\n  sync_wt: 0.05\n  steps: 7\n")
    cfg = load_config(tmp_path / "ls.yaml", ["training.steps=9"], {"syncnet.window": 16})
    assert isinstance(cfg, LipsyncConfig)
    assert (cfg.data.root, cfg.data.split, cfg.generator.encoder) == ("LRS2", "pretrain", "wav2lip")
    assert (cfg.training.sync_wt, cfg.training.steps, cfg.syncnet.window) == (0.05, 9, 16)
    assert cfg.training.disc_wt == 0.07 and cfg.syncnet_training.batch == 16  # defaults
    (tmp_path / "bad.yaml").write_text("training:\n  sync_weight: 0.05\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: training: unknown key 'sync_weight' \(did you mean 'sync_wt'"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, ["training.lr=fast"])


def test_training_functions_take_config_sections():
    """No long positional lists: networks and runs are configured by sections, runtime objects are keywords."""
    for fn, n in ((train_generator, 4), (train_syncnet, 4)):
        params = inspect.signature(fn).parameters.values()
        positional = [p for p in params if p.kind == p.POSITIONAL_OR_KEYWORD]
        assert len(positional) == n and all(p.kind == p.KEYWORD_ONLY for p in params if p not in positional)
    assert [p.name for p in inspect.signature(train_generator).parameters.values()][:4] == [
        "store", "out", "model", "train"]


def test_cli_reads_a_config_file_and_writes_the_resolved_one(tmp_path, monkeypatch):
    import yaml

    from marlin.cli import main

    monkeypatch.setenv("TQDM_DISABLE", "1")
    write_toy_lrs2(tmp_path / "lrs2", speakers=1, per_speaker=2, n_frames=30, size=32)
    (tmp_path / "s.yaml").write_text(f"data:\n  root: {tmp_path / 'lrs2'}\nsyncnet:\n  face_size: 32\n  width: 4\n"
                                     "  stages: 3\n  embed_dim: 16\nsyncnet_training:\n  steps: 5\n  batch: 4\n")
    assert main(["lipsync", "train-syncnet", "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "s.pt"),
                 "--steps", "2", "--set", "syncnet_training.lr=0.001", "--device", "cpu"]) == 0
    run = yaml.safe_load((tmp_path / "s.config.yaml").read_text())  # the resolved config beside the checkpoint
    assert run["syncnet_training"] == {**run["syncnet_training"], "steps": 2, "lr": 0.001, "batch": 4}
    assert run["syncnet"]["width"] == 4 and run["data"]["root"] == str(tmp_path / "lrs2")
    ck = load_lipsync_checkpoint(tmp_path / "s.pt", "syncnet")
    assert ck["step"] == 2 and ck["training"]["lr"] == 0.001 and ck["config"]["width"] == 4
    (tmp_path / "typo.yaml").write_text("syncnet:\n  widht: 4\n")
    assert main(["lipsync", "train-syncnet", "--config", str(tmp_path / "typo.yaml"), "--data", str(tmp_path / "lrs2"),
                 "--out", str(tmp_path / "t.pt")]) == 2


def test_checkpoints_are_lipsync_containers_and_resume(store, tmp_path):
    torch.manual_seed(0)
    out = tmp_path / "sync.pt"  # any name: the container is recognised by its content
    h = train_syncnet(store, out, TINY_SYNC, SyncTrainConfig(steps=3, batch=4, lr=1e-3))
    tensors, config, meta = load_container(out, "lipsync")
    assert config == {"network": "syncnet", "model": TINY_SYNC.to_dict()}
    assert meta["step"] == 3 and meta["training"]["lr"] == 1e-3 and len(meta["history"]) == 3
    assert any(k.startswith("optimizer.state.") for k in tensors) and any(k.startswith("model.") for k in tensors)
    h2 = train_syncnet(store, out, TINY_SYNC, SyncTrainConfig(steps=5, batch=4, lr=1e-3))
    assert h2[:3] == h and len(h2) == 5
    opt = load_lipsync_checkpoint(out, "syncnet")["optimizer"]
    assert int(opt["state"][0]["step"]) == 5 and opt["param_groups"][0]["lr"] == 1e-3
    with pytest.raises(CheckpointError, match=r"sync\.pt: is a syncnet checkpoint, expected a generator"):
        load_generator(out)


def test_old_format_checkpoints_still_load_and_resume(store, tmp_path):
    """Files written before the container ("marlin-lipsync/1" torch dicts, configs without later fields)."""
    torch.manual_seed(0)
    net = SyncNet(TINY_SYNC)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    old_cfg = {k: v for k, v in TINY_SYNC.to_dict().items() if k != "arch"}
    torch.save({"format": "marlin-lipsync/1", "kind": "syncnet", "config": old_cfg, "step": 2, "history": [0.7, 0.6],
                "model": net.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "old_sync.pt")
    loaded = load_syncnet(tmp_path / "old_sync.pt")
    assert loaded.config == TINY_SYNC
    for k, v in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    h = train_syncnet(store, tmp_path / "old_sync.pt", TINY_SYNC, SyncTrainConfig(steps=3, batch=4, lr=1e-3))
    assert h[:2] == [0.7, 0.6] and len(h) == 3
    assert load_container(tmp_path / "old_sync.pt", "lipsync")[2]["step"] == 3  # rewritten as a container

    gen = Generator(TINY_GEN)
    torch.save({"format": "marlin-lipsync/1", "kind": "generator", "config": TINY_GEN.to_dict(), "step": 1,
                "history": [{"l1": 0.1}], "model": gen.state_dict(), "optimizer": {}}, tmp_path / "old_gen.pt")
    assert load_generator(tmp_path / "old_gen.pt").config == TINY_GEN
    bad = dict(TINY_GEN.to_dict(), colour="red")
    torch.save({"format": "marlin-lipsync/1", "kind": "generator", "config": bad, "step": 1, "history": [],
                "model": gen.state_dict()}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match=r"future\.pt: unknown key 'colour'"):
        load_generator(tmp_path / "future.pt")


def test_generator_checkpoint_keeps_the_discriminator(store, tmp_path):
    torch.manual_seed(0)
    train = GeneratorTrainConfig(steps=2, batch=1, sync_wt=0, disc_width=4)
    train_generator(store, tmp_path / "g.pt", TINY_GEN, train)
    ck = load_lipsync_checkpoint(tmp_path / "g.pt", "generator")
    assert {"model", "optimizer", "disc", "disc_optimizer"} <= set(ck) and ck["sync_on"] is True
    h = train_generator(store, tmp_path / "g.pt", TINY_GEN, GeneratorTrainConfig(steps=3, batch=1, sync_wt=0,
                                                                                  disc_width=4))
    assert len(h) == 3
