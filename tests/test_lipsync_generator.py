"""Generator variants (Wav2Lip CNN, ViT from scratch, MARLIN-initialised), their shapes, MARLIN weight loading,
and training steps that lower the losses."""
import numpy as np
import pytest
import torch

from helpers import tiny_config
from marlin.lipsync.config import GeneratorTrainConfig
from marlin.lipsync.data import generator_batch
from marlin.lipsync.generator import Discriminator, Generator, GeneratorConfig, load_marlin_encoder
from marlin.lipsync.losses import discriminator_loss, generator_losses
from marlin.lipsync.syncnet import SyncNet, SyncNetConfig
from marlin.lipsync.train import load_lipsync_checkpoint, load_generator, train_generator
from marlin.models import Marlin

TINY_VIT = tiny_config(n_frames=16, encoder_embed_dim=32, decoder_embed_dim=16)
CNN = GeneratorConfig("cnn", 5, 32, width=8, audio_dim=32)
VIT = GeneratorConfig("vit", 16, 32, width=8, audio_dim=32, decoder_width=32, marlin=TINY_VIT.to_dict())


pytestmark = pytest.mark.lrs2(per_speaker=3, n_frames=50, min_frames=16)  # `store`: ViT windows of 16 frames


@pytest.mark.parametrize("cfg", [CNN, GeneratorConfig("cnn", 5, 48, width=4, audio_dim=16), VIT],
                         ids=["cnn32", "cnn48", "vit"])
def test_shapes_and_upper_half_kept(cfg):
    torch.manual_seed(0)
    gen = Generator(cfg)
    s, t = cfg.face_size, cfg.window
    inputs = torch.rand(2, t, 6, s, s)
    out = gen(inputs, torch.rand(2, t, 1, 80, 16))
    assert out.shape == (2, t, 3, s, s) and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out[..., : s // 2, :], inputs[:, :, :3, : s // 2])
    with pytest.raises(ValueError, match="expected inputs"):
        gen(torch.rand(1, t, 3, s, s), torch.rand(1, t, 1, 80, 16))


def test_vit_token_maps_follow_frames():
    torch.manual_seed(0)
    codec = Generator(VIT).face
    clips = torch.rand(1, 16, 3, 32, 32)
    maps = codec.frame_maps(clips)  # (16, D, 2, 2)
    assert maps.shape == (16, 32, 2, 2)
    assert torch.equal(maps[0], maps[1]) and not torch.equal(maps[1], maps[2])  # one tubelet per 2 frames
    tokens = codec.encoder.extract_features(torch.nn.functional.interpolate(
        clips[0], size=(32, 32)).transpose(0, 1)[None], keep_seq=True)  # (1, 8*2*2, D)
    torch.testing.assert_close(maps[2 * 3][:, 1, 0], tokens[0, 3 * 4 + 1 * 2 + 0])  # tubelet 3, row 1, col 0


def test_marlin_weights_load(tmp_path):
    torch.manual_seed(1)
    m = Marlin(TINY_VIT)
    m.save(tmp_path / "tiny.safetensors")
    gen = Generator(GeneratorConfig(**{**VIT.to_dict(), "encoder": "marlin"}))
    load_marlin_encoder(gen, tmp_path / "tiny.safetensors")
    for k, v in m.encoder.state_dict().items():
        assert torch.equal(gen.face.encoder.state_dict()[k], v)
    other = Marlin(tiny_config(n_frames=16, decoder_embed_dim=16))
    other.save(tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="does not match"):
        load_marlin_encoder(gen, tmp_path / "other.safetensors")


def test_losses_use_wav2lip_weights(store):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sync = SyncNet(SyncNetConfig(5, 32, 8, 3, 32)).eval()
    disc = Discriminator(32, 8)
    inputs, chunks, sync_mels, target = generator_batch(store, 2, 5, 5, rng)
    assert inputs.shape == (2, 5, 6, 32, 32) and chunks.shape == (2, 5, 1, 80, 16)
    assert sync_mels.shape == (2, 1, 1, 80, 16)
    assert (inputs[:, :, :3, 16:] == 0).all() and torch.equal(inputs[:, :, :3, :16], target[:, :, :, :16])
    out = Generator(CNN)(inputs, chunks)
    ls = generator_losses(out, target, sync_mels, sync, disc)
    expected = 0.9 * ls["l1"].item() + 0.03 * ls["sync"].item() + 0.07 * ls["gan"].item()
    assert ls["total"].item() == pytest.approx(expected, rel=1e-5)
    assert discriminator_loss(disc, out, target).item() > 0
    _, _, sm16, _ = generator_batch(store, 1, 16, 16, rng)
    assert sm16.shape == (1, 1, 1, 80, 51)
    with pytest.raises(ValueError, match="multiple of the SyncNet window"):
        generator_batch(store, 1, 16, 5, rng)


@pytest.mark.parametrize("cfg,steps", [(CNN, 24), (VIT, 16)], ids=["cnn", "vit"])
def test_training_lowers_l1(store, tmp_path, cfg, steps):
    rng = np.random.default_rng(123)
    held = generator_batch(store, 4, cfg.window, 5 if cfg.window == 5 else 16, rng)
    torch.manual_seed(0)
    sync = SyncNet(SyncNetConfig(cfg.window, 32, 8, 3, 32))
    hist = train_generator(store, tmp_path / "g.pt", cfg, GeneratorTrainConfig(steps=steps, batch=4, lr=2e-3,
                                                                              disc_width=8), syncnet=sync)
    assert len(hist) == steps and {"l1", "sync", "gan", "disc", "total"} <= set(hist[0])
    torch.manual_seed(GeneratorTrainConfig().seed)  # the generator training started from (seeded weights)
    gen0 = Generator(cfg).eval()
    gen = load_generator(tmp_path / "g.pt")
    with torch.no_grad():
        before = torch.nn.functional.l1_loss(gen0(held[0], held[1]), held[3]).item()
        after = torch.nn.functional.l1_loss(gen(held[0], held[1]), held[3]).item()
    assert after < 0.8 * before
    assert np.mean([h["l1"] for h in hist[-4:]]) < np.mean([h["l1"] for h in hist[:4]])


def test_official_marlin_checkpoint_gives_the_official_token_maps(fixtures_dir):
    """MARLIN from an official-format .pt: the per-frame maps are the official encoder tokens (fixture)."""
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt", full_model=False)
    cfg = GeneratorConfig("marlin", 16, 224, width=4, audio_dim=8, decoder_width=8, marlin=model.config.to_dict())
    gen = Generator(cfg)
    load_marlin_encoder(gen, fixtures_dir / "tiny.encoder.pt", fixtures_dir / "tiny.yaml")
    clip = torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255  # (1, 3, 16, 224, 224)
    with torch.no_grad():
        maps = gen.face.frame_maps(clip.transpose(1, 2))  # (16, 48, 14, 14)
    official = torch.from_numpy(np.load(fixtures_dir / "features_seq.npy")).view(8, 14, 14, 48)
    for frame in (0, 5, 15):
        torch.testing.assert_close(maps[frame].permute(1, 2, 0), official[frame // 2], atol=1e-4, rtol=1e-4)


def test_lrs2_96px_faces_go_through_224_and_back():
    """The paper's setting: 96 px faces upsampled to the 224 px encoder, output brought back to 96 px."""
    cfg224 = tiny_config(img_size=224, n_frames=16, decoder_embed_dim=16)
    gen = Generator(GeneratorConfig("vit", 16, 96, width=4, audio_dim=8, decoder_width=16, marlin=cfg224.to_dict()))
    with torch.no_grad():
        out = gen(torch.rand(1, 16, 6, 96, 96), torch.rand(1, 16, 1, 80, 16))
    assert out.shape == (1, 16, 3, 96, 96)


def test_encoder_lr_zero_freezes_the_marlin_encoder(store, tmp_path):
    torch.manual_seed(2)
    m = Marlin(TINY_VIT, full_model=False)
    cfg = GeneratorConfig(**{**VIT.to_dict(), "encoder": "marlin"})
    train_generator(store, tmp_path / "g.pt", cfg, GeneratorTrainConfig(steps=2, batch=1, sync_wt=0, disc_wt=0,
                                                                        encoder_lr=0),
                    encoder_state=m.encoder.state_dict())
    gen = load_generator(tmp_path / "g.pt")
    for k, v in m.encoder.state_dict().items():
        assert torch.equal(gen.face.encoder.state_dict()[k], v)
    opt = load_lipsync_checkpoint(tmp_path / "g.pt", "generator")["optimizer"]
    n_enc = len(list(gen.face.encoder.parameters()))
    assert len(opt["param_groups"]) == 1
    assert len(opt["param_groups"][0]["params"]) == len(list(gen.parameters())) - n_enc
    with pytest.raises(ValueError, match="needs a trained SyncNet"):
        train_generator(store, tmp_path / "h.pt", CNN, GeneratorTrainConfig(steps=1))


def test_sync_term_switches_on_like_wav2lip(store, tmp_path):
    torch.manual_seed(0)
    sync = SyncNet(SyncNetConfig(5, 32, 8, 3, 32))
    h = train_generator(store, tmp_path / "on.pt", CNN, GeneratorTrainConfig(steps=22, batch=1, disc_wt=0,
                                                                             sync_after=100.0), syncnet=sync)
    assert [x["sync_wt"] for x in h] == [0.0] * 20 + [0.03] * 2  # switched on after 20 steps below the bar
    assert all(x["sync"] > 0 for x in h)  # the expert's loss is logged while its weight is 0
    assert load_lipsync_checkpoint(tmp_path / "on.pt", "generator")["sync_on"] is True
    h = train_generator(store, tmp_path / "off.pt", CNN, GeneratorTrainConfig(steps=21, batch=1, disc_wt=0,
                                                                              sync_after=0.0), syncnet=sync)
    assert all(x["sync_wt"] == 0 for x in h)
