"""One state-dict check (`marlin.checkpoints.load_into`) behind every loader: a file with a key missing and a tensor
of the wrong shape is refused with ONE line that names the file and lists both, whatever network it is for."""
import pytest
import torch

from helpers import tiny_config
from marlin import Marlin
from marlin.checkpoints import REBUILT, CheckpointError
from marlin.lipsync.generator import Discriminator, Generator, GeneratorConfig
from marlin.lipsync.syncnet import SyncNet, SyncNetConfig

TINY_SYNC = SyncNetConfig(window=5, face_size=32, width=4, stages=3, embed_dim=16)
TINY_GEN = GeneratorConfig("cnn", 5, 32, width=4, audio_dim=16)


def _spoil(sd: dict) -> tuple[dict, str, str]:
    """``sd`` with its first weight dropped and its last one a size larger: (spoiled, dropped key, resized key)."""
    keys = [k for k, v in sd.items() if v.ndim and not k.endswith(REBUILT)]
    dropped, resized = keys[0], keys[-1]
    out = {k: v for k, v in sd.items() if k != dropped}
    out[resized] = torch.zeros([n + 1 for n in sd[resized].shape])
    return out, dropped, resized


def _lipsync_file(path, kind: str, sd: dict, **more):
    """A toolkit lip-sync checkpoint (the "marlin-lipsync/1" torch dict its loaders read besides the container)."""
    config = (TINY_SYNC if kind == "syncnet" else TINY_GEN).to_dict()
    torch.save({"format": "marlin-lipsync/1", "kind": kind, "config": config, "step": 0, "history": [],
                "model": sd, **more}, path)


def _marlin_file(tmp_path):
    sd, dropped, resized = _spoil(Marlin(tiny_config(), full_model=False).state_dict())
    torch.save(sd, tmp_path / "m.encoder.pt")
    return tmp_path / "m.encoder.pt", lambda p: Marlin.from_file(tiny_config(), p), dropped, resized


def _hub_folder(tmp_path):
    from safetensors.torch import load_file, save_file

    Marlin(tiny_config(), full_model=False).save_pretrained(tmp_path / "hub")
    weights = tmp_path / "hub" / "model.safetensors"
    sd, dropped, resized = _spoil(load_file(weights))
    save_file(sd, weights, metadata={"format": "pt"})
    return (tmp_path / "hub", lambda p: Marlin.from_pretrained(p), dropped.removeprefix("marlin."),
            resized.removeprefix("marlin."))


def _syncnet(tmp_path):
    from marlin.lipsync.train import load_syncnet

    sd, dropped, resized = _spoil(SyncNet(TINY_SYNC).state_dict())
    _lipsync_file(tmp_path / "sync.pt", "syncnet", sd)
    return tmp_path / "sync.pt", load_syncnet, dropped, resized


def _generator(tmp_path):
    from marlin.lipsync.train import load_generator

    sd, dropped, resized = _spoil(Generator(TINY_GEN).state_dict())
    _lipsync_file(tmp_path / "gen.pt", "generator", sd)
    return tmp_path / "gen.pt", load_generator, dropped, resized


def _discriminator(tmp_path):
    from marlin.lipsync.train import load_discriminator_weights

    disc, dropped, resized = _spoil(Discriminator(32, 4).state_dict())
    _lipsync_file(tmp_path / "gen.pt", "generator", Generator(TINY_GEN).state_dict(), disc=disc)
    return tmp_path / "gen.pt", lambda p: load_discriminator_weights(Discriminator(32, 4), p), dropped, resized


def _inception(tmp_path):
    from marlin.lipsync.inception import FIDInceptionV3

    sd, dropped, resized = _spoil(FIDInceptionV3().state_dict())
    torch.save(sd, tmp_path / "pt_inception.pth")
    return tmp_path / "pt_inception.pth", FIDInceptionV3.from_file, dropped, resized


def _syncnet_v2(tmp_path):
    from marlin.lipsync.evaluate import load_scorer
    from marlin.lipsync.syncnet_v2 import SyncNetV2

    sd, dropped, resized = _spoil(SyncNetV2().state_dict())
    torch.save(sd, tmp_path / "syncnet_v2.model")
    return tmp_path / "syncnet_v2.model", load_scorer, dropped, resized


@pytest.mark.parametrize("make", [_marlin_file, _hub_folder, _syncnet, _generator, _discriminator, _inception,
                                  _syncnet_v2], ids=lambda f: f.__name__.strip("_"))
def test_a_file_that_does_not_fit_is_one_line_naming_it(tmp_path, make):
    path, load, dropped, resized = make(tmp_path)
    with pytest.raises(CheckpointError) as e:
        load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    assert f"missing keys (1): {dropped}" in msg and f"shape conflicts (1): {resized}: file (" in msg, msg


def test_not_strict_allows_missing_keys_but_never_a_wrong_shape(tmp_path):
    from marlin.checkpoints import load_into

    net = Discriminator(32, 4)
    sd, dropped, resized = _spoil(net.state_dict())
    with pytest.raises(CheckpointError, match=rf"^x\.pt: checkpoint does not fit the model: .*shape conflicts \(1\): "
                                              rf"{resized}: file"):
        load_into(net, sd, "x.pt", strict=False)
    sd[resized] = net.state_dict()[resized] + 1
    before = net.state_dict()[dropped].clone()
    load_into(net, {**sd, "extra.weight": torch.zeros(1)}, "x.pt", strict=False)
    assert torch.equal(net.state_dict()[resized], sd[resized]) and torch.equal(net.state_dict()[dropped], before)
    with pytest.raises(CheckpointError, match=r"^x\.pt: entries that are not tensors: \['step'\]"):
        load_into(net, {**sd, "step": 3}, "x.pt")
