"""Objective parity with the official fixtures; one-forward step == the official two-forward loop; schedule."""
import copy
import json

import numpy as np
import pytest
import torch

from marlin.checkpoints import load_file, load_into, split_checkpoint
from marlin.masking import MaskSpec, make_masks
from marlin.models import Critic, Marlin
from marlin.train import pretrain_config
from marlin.train.objective import (
    adversarial_loss,
    critic_loss,
    gradient_penalty,
    masked_pixel_weights,
    masked_targets,
    reconstruction_loss,
)
from marlin.train.official_loop import official_iteration
from marlin.train.schedule import lr_at, scaled_lrs
from marlin.train.step import train_iteration

TINY = {"img_size": 32, "patch_size": 8, "clip_frames": 8, "tubelet_size": 2,
        "encoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
        "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2}}

RANDOM_75 = MaskSpec("random", 0.75)


def test_fixture_parity(fixtures_dir):
    sd, critic_sd, _ = split_checkpoint(load_file(fixtures_dir / "tiny.ckpt"), "tiny.ckpt")
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.ckpt")
    critic = Critic(model.config)
    load_into(critic, critic_sd)
    x = torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255
    mask = torch.from_numpy(np.load(fixtures_dir / "mask.npy"))
    ref = json.loads((fixtures_dir / "losses.json").read_text())
    with torch.no_grad():
        pred = model(x, mask)
        y = masked_targets(x, mask, 16, 2)
        rec = reconstruction_loss(pred, y)
        adv = adversarial_loss(critic, pred, ref["adv_weight"])
        d_loss, d_fake, d_real = critic_loss(critic, pred, y)
    np.testing.assert_allclose(y[:, :4].numpy(), np.load(fixtures_dir / "target_patches.npy"), atol=1e-6)
    assert y.shape == (1, 1412, 1536)
    for name, v in [("rec_loss", rec), ("adv_loss", adv), ("d_loss", d_loss), ("d_fake_mean", d_fake),
                    ("d_real_mean", d_real), ("g_loss", rec + adv)]:
        assert abs(v.item() - ref[name]) < 1e-5, name


def test_adversarial_loss_gives_critic_no_gradient():
    cfg = pretrain_config(TINY)
    critic = Critic(cfg.model)
    pred = torch.randn(2, 5, cfg.model.patch_dim, requires_grad=True)
    adversarial_loss(critic, pred, 0.01).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_normalised_targets_and_gradient_penalty():
    x = torch.rand(2, 3, 8, 32, 32)
    mask = make_masks(RANDOM_75, 2, (4, 4, 4), generator=torch.Generator().manual_seed(0))
    y = masked_targets(x, mask, 8, 2, normalize=True)
    assert y.shape == (2, 48, 384)
    per_channel = y.view(2, 48, 3, 128)
    assert per_channel.mean(-1).abs().max() < 1e-4
    assert (per_channel.std(-1) - 1).abs().max() < 1e-3
    critic = Critic(pretrain_config(TINY).model)
    gp = gradient_penalty(critic, y, torch.rand_like(y), torch.Generator().manual_seed(0))
    assert gp.ndim == 0 and torch.isfinite(gp) and gp > 0


@pytest.mark.parametrize("d_steps", [1, 2])
def test_one_forward_step_equals_official_loop(d_steps):
    cfg = pretrain_config({**TINY, "d_steps": d_steps, "adv_weight": 0.5})  # strong adversarial term
    torch.manual_seed(0)
    model, critic = Marlin(cfg.model), Critic(cfg.model)
    ours = (model, critic)
    theirs = (copy.deepcopy(model), copy.deepcopy(critic))
    start = copy.deepcopy(ours)

    def opts(m, c):
        return (torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.95)),
                torch.optim.AdamW(c.parameters(), lr=1e-3, betas=(0.9, 0.95)))

    o1, o2 = opts(*ours), opts(*theirs)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.rand(2, 3, 8, 32, 32, generator=g)
        mask = make_masks(RANDOM_75, 2, (4, 4, 4), generator=g)
        a = train_iteration(*ours, *o1, x, mask, cfg)
        b = official_iteration(*theirs, *o2, x, mask, cfg)
        assert abs(a["rec_loss"].item() - b["rec_loss"].item()) < 1e-6
        assert abs(a["adv_loss"].item() - b["adv_loss"].item()) < 1e-6
    for (n, p), q in zip(list(ours[0].named_parameters()) + list(ours[1].named_parameters()),
                         list(theirs[0].parameters()) + list(theirs[1].parameters())):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=n)
    for now, before in zip(ours, start):  # both generator and critic were really trained
        assert max((p - q).abs().max().item() for p, q in zip(now.parameters(), before.parameters())) > 1e-4


def test_schedule_warmup_cosine_and_scaling():
    base, warm, low = scaled_lrs(1.5e-4, 1e-6, 1e-5, 512)
    assert base == pytest.approx(3e-4) and low == pytest.approx(2e-5)
    assert lr_at(0, base, warm, low, 10, 100) == pytest.approx(warm)
    assert lr_at(5, base, warm, low, 10, 100) == pytest.approx((warm + base) / 2)
    assert lr_at(10, base, warm, low, 10, 100) == pytest.approx(base)
    assert lr_at(55, base, warm, low, 10, 100) == pytest.approx((base + low) / 2)
    assert lr_at(100, base, warm, low, 10, 100) == pytest.approx(low)
    values = [lr_at(s, base, warm, low, 10, 100) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_reconstruction_sheet_shows_a_visible_frame_under_frame_masking():
    import numpy as np
    import torch

    from marlin.models.config import MarlinConfig
    from marlin.train.images import _shown_frames, reconstruction_sheet

    # 8 tubelets, only tubelet 3 visible: evenly spaced picks (0, 2, 5, 7) get the nearest one swapped for 3
    assert _shown_frames(np.array([0, 0, 0, 4, 0, 0, 0, 0]), 4, 2) == [0, 6, 10, 14]
    assert _shown_frames(np.array([1, 1, 1, 1, 1, 1, 1, 1]), 4, 2) == [0, 4, 10, 14]
    x = torch.rand(3, 16, 32, 32)
    mask = torch.zeros(32, dtype=torch.bool)
    mask[12:20] = True  # frame masking with tubelets 3 and 4 visible (evenly spaced picks would be 0, 2, 5, 7)
    assert make_masks(MaskSpec("frame", 0.75), 1, (8, 2, 2))[0].reshape(8, 4).all(1).sum() == 2  # what frame masking keeps
    pred = torch.rand(int((~mask).sum()), 3 * 2 * 16 * 16)
    sheet = reconstruction_sheet(x, mask, pred, MarlinConfig(img_size=32, patch_size=16, n_frames=16))
    rows = np.split(sheet, 4, 0)  # 4 rows of original | masked | reconstruction, each tile padded by 1 px x5
    side = sheet.shape[1] // 3
    masked = [r[5:side - 5, side + 5:2 * side - 5].astype(int) for r in rows]
    assert not all(np.all(np.abs(m - 128) <= 1) for m in masked)  # a shown frame has visible tokens
    assert any(np.all(np.abs(m - 128) <= 1) for m in masked)  # and masked frames are grey


def test_part_weighted_loss_weighs_the_feature_pixels():
    x = torch.rand(2, 3, 8, 32, 32)
    mask = make_masks(RANDOM_75, 2, (4, 4, 4), generator=torch.Generator().manual_seed(0))
    y = masked_targets(x, mask, 8, 2)
    features = torch.zeros(2, 8, 32, 32, dtype=torch.bool)
    features[:, :, 8:12, 4:20] = True  # a band of "mouth" pixels in every frame
    w = masked_pixel_weights(features, mask, 8, 2, 10.0)
    assert w.shape == (2, 48, 128) and set(w.unique().tolist()) == {1.0, 10.0}
    # the weights sit on the pixels they describe: laid out like the targets of a clip that is 1 on the band
    band = masked_targets(features[:, None].expand(-1, 3, -1, -1, -1).float(), mask, 8, 2) == 1.0  # (2, 48, 384)
    assert torch.equal((w == 10.0).repeat(1, 1, 3), band)
    # an error on band pixels only costs 10x its share; a uniform weight is the plain mean
    pred = y + band.float()
    frac = band.float().mean()
    expected = 10 * frac / (10 * frac + (1 - frac))
    assert torch.allclose(reconstruction_loss(pred, y, w), expected, atol=1e-6)
    noisy = y + torch.randn_like(y)
    assert torch.allclose(reconstruction_loss(noisy, y, torch.ones_like(w)), reconstruction_loss(noisy, y))
    assert torch.allclose(reconstruction_loss(pred, y, masked_pixel_weights(features, mask, 8, 2, 1.0)), frac)


def test_part_weight_must_be_positive():
    with pytest.raises(ValueError, match="part_weight"):
        pretrain_config(TINY, part_weight=0.0)


@pytest.mark.parametrize("gp_weight", [0.0, 10.0])
def test_critic_update_weights_the_gradient_penalty(gp_weight):
    from marlin.train.step import critic_update

    cfg = pretrain_config({**TINY, "gp_weight": gp_weight})
    torch.manual_seed(0)
    critic = Critic(cfg.model)
    fake, real = torch.randn(2, 5, cfg.model.patch_dim), torch.randn(2, 5, cfg.model.patch_dim)

    class Recorder:  # an optimiser that keeps the gradients it is asked to apply
        def step(self):
            self.grads = [p.grad.clone() for p in critic.parameters()]

        def zero_grad(self, set_to_none=True):
            critic.zero_grad(set_to_none=set_to_none)

    opt = Recorder()
    critic_update(critic, opt, fake, real, cfg, seed=0)
    d_loss = critic_loss(critic, fake, real)[0]
    gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(0))
    expected = torch.autograd.grad(d_loss + gp_weight * gp, list(critic.parameters()))
    for got, want in zip(opt.grads, expected):
        torch.testing.assert_close(got, want)
