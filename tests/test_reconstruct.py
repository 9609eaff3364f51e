"""`marlin reconstruct` and `marlin.reconstruct`: official predictions, the pretraining loss beside the mean-patch
baseline, the four-row sheet, encoder-only refusal, and the command on items and on real videos."""
import json
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from helpers import make_items, tiny_config

from marlin.cli import main
from marlin.models import Marlin, patchify
from marlin.reconstruct import (MASK_FILL, RECORD, RUN_RECORD, SEPARATOR, clip_mask, load_full_model,
                                reconstruct_clip, sheet)
from marlin.train.objective import masked_targets, reconstruction_loss
from marlin.video import read_frames

TINY = ["--model", str(FIXTURES / "tiny.yaml")]


@pytest.fixture(scope="module")
def fixture_clip():
    """The official fixture's clip as decoded frames (T, H, W, 3) uint8 and its mask (N,) bool."""
    clip = np.load(FIXTURES / "clip.npy")[0].transpose(1, 2, 3, 0)
    return clip, torch.from_numpy(np.load(FIXTURES / "mask.npy"))[0]


@pytest.fixture(scope="module")
def fixture_model():
    return load_full_model(FIXTURES / "tiny.full.pt", FIXTURES / "tiny.yaml")


def official_reconstruction() -> np.ndarray:
    parts = [np.load(FIXTURES / f"reconstruction.part{i}.npy") for i in (0, 1)]
    return np.concatenate(parts, 1)[0]


@pytest.mark.parametrize("name", ["tiny.full.pt", "tiny.ckpt"])
def test_predictions_and_loss_match_the_official_model(fixture_clip, name):
    clip, mask = fixture_clip
    model, record = load_full_model(FIXTURES / name, FIXTURES / "tiny.yaml")
    rec = reconstruct_clip(model, clip, mask)
    assert np.abs(rec.pred.numpy() - official_reconstruction()).max() <= 1e-5
    np.testing.assert_allclose(rec.target[:4].numpy(), np.load(FIXTURES / "target_patches.npy")[0], atol=1e-7)
    official = json.loads((FIXTURES / "losses.json").read_text())["rec_loss"]  # the official MSELoss
    assert rec.loss == pytest.approx(official, rel=1e-5)
    # the mean-patch baseline: each masked patch = the mean of the clip's visible patches, same loss
    x = torch.from_numpy(clip).permute(3, 0, 1, 2).float()[None] / 255
    y = masked_targets(x, mask[None], 16, 2)
    mean = patchify(x)[0][mask].mean(0)
    assert rec.baseline_loss == pytest.approx(float(reconstruction_loss(mean.expand_as(y[0])[None], y)), rel=1e-6)
    # random weights: far worse than the baseline, which is what makes an untrained checkpoint obvious
    assert rec.loss > 10 * rec.baseline_loss
    assert len(record["sha256"]) == 64 and record["path"].endswith(name)


def test_masked_row_hides_exactly_the_masked_patches(fixture_clip, fixture_model):
    clip, mask = fixture_clip
    rec = reconstruct_clip(fixture_model[0], clip, mask)
    views = rec.views()  # (4, T, H, W, 3): original, masked, reconstruction, heat map
    tokens = [patchify(torch.from_numpy(v).permute(3, 0, 1, 2)[None].float())[0] for v in views[:3]]
    original, masked, recon = tokens
    assert (original == patchify(torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float())[0]).all()
    assert (masked[~mask] == MASK_FILL).all()  # every masked patch hidden ...
    assert (masked[mask] == original[mask]).all()  # ... and every visible one shown as it is
    assert not (masked[mask] == MASK_FILL).all(1).any()  # (a noise clip has no grey patch of its own)
    assert (recon[mask] == original[mask]).all()  # visible patches pasted back
    expected = (rec.pred.clamp(0, 1) * 255).round()
    assert (recon[~mask] == expected).all()
    # the sheet: row r, column j is view r of tubelet j's first frame
    out = sheet(views)
    h = w = 224
    for r in range(4):
        for j in (0, 7):
            tile = out[r * (h + SEPARATOR):r * (h + SEPARATOR) + h, j * (w + SEPARATOR):j * (w + SEPARATOR) + w]
            assert (tile == views[r, 2 * j]).all()
    # heat map: visible patches grey, masked patches coloured
    heat = patchify(torch.from_numpy(views[3]).permute(3, 0, 1, 2)[None].float())[0].view(len(mask), 3, -1)
    assert (heat[mask].amax(1) == heat[mask].amin(1)).all()
    assert (heat[~mask].amax(1) != heat[~mask].amin(1)).all()


def test_encoder_only_checkpoint_is_refused(tmp_path, capsys):
    code = main(["reconstruct", str(FIXTURES / "cropped05.mp4"), "--mask", "tube", "--checkpoint",
                 str(FIXTURES / "tiny.encoder.pt"), *TINY, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("marlin reconstruct: error: ") and "tiny.encoder.pt" in err[0]
    assert "needs the decoder" in err[0] and "*.full.pt" in err[0] and "*.ckpt" in err[0]
    assert not (tmp_path / "out").exists()  # nothing made before the checkpoint was known to be fine


def test_raw_video_with_fasking_needs_crop_face(tmp_path, capsys):
    # refused before anything is loaded: the checkpoint does not even exist
    code = main(["reconstruct", str(FIXTURES / "cropped05.mp4"), "--checkpoint", str(tmp_path / "none.pt"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "cropped05.mp4" in err[0] and "needs parse maps" in err[0] and "--crop-face" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_full(tmp_path_factory):
    """A tiny full model (32 px, 8 px patches: 32 tokens) saved in our safetensors format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    Marlin(tiny_config(patch_size=8), full_model=True).save(path)
    return path


def test_command_on_items(tmp_path, capsys, tiny_full):
    items = make_items(tmp_path / "items", n=2)
    out = tmp_path / "out"
    args = ["reconstruct", str(items), "--checkpoint", str(tiny_full), "--clips", "2", "--stride", "4", "--ratio", "0.5",
            "--out", str(out)]
    assert main(args) == 0
    assert "2 written" in capsys.readouterr().out
    run = json.loads((out / RUN_RECORD).read_text())
    assert run["mask"] == {"strategy": "fasking", "ratio": 0.5, "seed": 0}
    model, _ = load_full_model(tiny_full)
    for name in ("v0", "v1"):
        folder = out / name  # a folder of items gives OUT/<item path>/
        record = json.loads((folder / RECORD).read_text())
        assert record["read_as"] == "item" and record["mask"]["parse"] == "parse.npz"
        assert record["checkpoint"]["sha256"] == run["checkpoint"]["sha256"]
        assert [c["frames"] for c in record["clips"]] == [list(range(0, 8, 2)), list(range(8, 16, 2))]
        for c in record["clips"]:
            frames = read_frames(folder / c["mp4"])
            assert frames.shape == (4, 160, 4 * 160 + 3 * SEPARATOR, 3)  # 32 px clips enlarged 5x
            assert (folder / c["png"]).stat().st_size > 0
            # the loss is the pretraining objective's on the item's frames and the recorded mask
            item = items / name
            parse = np.load(item / "parse.npz")["parse"][c["frames"]]
            x = torch.from_numpy(read_frames(item / "clip.mp4", c["frames"])).permute(3, 0, 1, 2)[None].float() / 255
            mask = clip_mask("fasking", (2, 4, 4), 0.5, 0, parse, 8, 2)[None]
            with torch.no_grad():
                expected = reconstruction_loss(model(x, mask), masked_targets(x, mask, 8, 2))
            assert c["loss"] == pytest.approx(float(expected), rel=1e-5)
            assert c["visible_tokens"] == 16 and c["masked_tokens"] == 16
            assert c["visible"] == mask[0].nonzero()[:, 0].tolist()
            # fasking keeps background first: every visible tubelet holds background in its first frame
            background = torch.from_numpy(parse[::2] == 0).view(2, 4, 8, 4, 8).any(4).any(2).reshape(-1)
            assert background[c["visible"]].all() and not background.all()
    # a rerun skips what is done; other settings are refused, naming the difference
    assert main(args) == 0
    assert "0 written, 2 already present" in capsys.readouterr().out
    assert main(args + ["--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mask.seed" in err[0] and str(out) in err[0]


def test_command_on_fixture_video_and_a_bad_one(tmp_path, capsys):
    bad = tmp_path / "videos" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"not a video at all")
    good = tmp_path / "videos" / "cropped01.mp4"
    good.symlink_to(FIXTURES / "cropped01.mp4")
    out = tmp_path / "out"
    code = main(["reconstruct", str(good), str(bad), "--mask", "tube", "--checkpoint",
                 str(FIXTURES / "tiny.full.pt"), *TINY, "--out", str(out)])
    assert code == 1
    assert "broken.mp4" in (out / "failed.txt").read_text()
    record = json.loads((out / "cropped01" / RECORD).read_text())
    assert record["read_as"] == "video" and record["clips"][0]["frames"] == list(range(0, 32, 2))
    assert read_frames(out / "cropped01" / "clip000.mp4").shape == (16, 224, 4 * 224 + 3 * SEPARATOR, 3)
    assert (out / "cropped01" / "clip000.png").is_file()
    assert record["loss"] > 10 * record["baseline_loss"]  # random weights
    assert not (out / "broken").exists()


def test_crop_face_parses_on_the_spot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(FIXTURES / "cropped05.mp4"), "--crop-face", "--checkpoint",
                 str(FIXTURES / "tiny.full.pt"), *TINY, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "cropped05" / RECORD).read_text())
    assert record["read_as"] == "face pipeline" and record["mask"]["parse"] == "face pipeline parser"
    assert (out / "cropped05" / "clip000.mp4").is_file() and (out / "cropped05" / "clip000.png").is_file()


def test_png_without_opencv(tmp_path, monkeypatch):
    from marlin.images import save_png

    rgb = np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)
    monkeypatch.setitem(sys.modules, "cv2", None)  # the core install: no OpenCV
    save_png(tmp_path / "a.png", rgb)
    monkeypatch.undo()
    assert (read_frames(tmp_path / "a.png") == rgb).all()


def test_objective_of_a_toolkit_pretraining_record():
    """A checkpoint pretrained with normalised targets and weighted facial parts is scored by that objective."""
    from helpers import toy_frames

    from marlin.masking import feature_pixels
    from marlin.train.objective import denormalize_predictions, masked_pixel_weights

    torch.manual_seed(0)
    model = Marlin(tiny_config(patch_size=8), full_model=True).eval()
    model.training_record = {"config": {"trainer": {"norm_target": True, "part_weight": 3.0}}}
    frames, parse = toy_frames(0, 4, 32)
    mask = clip_mask("fasking", (2, 4, 4), 0.75, 0, parse, 8, 2)
    rec = reconstruct_clip(model, frames, mask, parse)
    x, m = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 255, mask[None]
    with torch.no_grad():
        pred = model(x, m)
    y = masked_targets(x, m, 8, 2, normalize=True)
    w = masked_pixel_weights(torch.from_numpy(feature_pixels(parse))[None], m, 8, 2, 3.0)
    assert rec.loss == pytest.approx(float(reconstruction_loss(pred, y, w)), rel=1e-6)
    assert rec.loss != pytest.approx(float(reconstruction_loss(pred, y)), rel=1e-3)  # the weights matter here
    # the picture shows pixels: predictions mapped back with the true patch statistics
    recon = patchify(torch.from_numpy(rec.views()[2]).permute(3, 0, 1, 2)[None].float(), 8, 2)[0]
    shown = (denormalize_predictions(pred, x, m, 8, 2)[0].clamp(0, 1) * 255).round()
    assert (recon[~mask] == shown).all()


def test_folders_and_safetensors_with_and_without_decoder(tmp_path, tiny_full):
    from marlin.checkpoints import CheckpointError

    full = Marlin.from_file(None, tiny_full)
    full.save_pretrained(tmp_path / "full")
    model, record = load_full_model(tmp_path / "full")
    assert model.decoder is not None and len(record["weights_sha256"]) == 64
    encoder = Marlin(tiny_config(patch_size=8), full_model=False)
    encoder.save_pretrained(tmp_path / "encoder")
    encoder.save(tmp_path / "encoder.safetensors")
    for path in (tmp_path / "encoder", tmp_path / "encoder.safetensors"):
        with pytest.raises(CheckpointError, match="encoder only.*needs the decoder"):
            load_full_model(path)


def test_a_ratio_that_leaves_nothing_visible_is_refused(tmp_path, capsys, tiny_full):
    items = make_items(tmp_path / "items", n=1)
    code = main(["reconstruct", str(items), "--checkpoint", str(tiny_full), "--ratio", "0.99", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ratio 0.99" in err[0] and "32 tubelets" in err[0]
    assert not (tmp_path / "out").exists()


def test_command_needs_no_extra(tmp_path, capsys, monkeypatch):
    for name in ("cv2", "lightning", "matplotlib", "torchmetrics"):  # the core install: none of the extras
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "out"
    code = main(["reconstruct", str(FIXTURES / "cropped05.mp4"), "--mask", "random", "--checkpoint",
                 str(FIXTURES / "tiny.full.pt"), *TINY, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    monkeypatch.undo()
    png = read_frames(out / "cropped05" / "clip000.png")[0]
    assert png.shape == (4 * 224 + 3 * SEPARATOR, 8 * 224 + 7 * SEPARATOR, 3)


def test_one_item_folder_is_named_by_the_item(tmp_path, capsys, tiny_full):
    items = make_items(tmp_path / "items", n=2)
    out = tmp_path / "out"
    assert main(["reconstruct", str(items / "v1"), "--checkpoint", str(tiny_full), "--out", str(out)]) == 0
    record = json.loads((out / "v1" / RECORD).read_text())
    assert record["read_as"] == "item" and record["input"] == str(items / "v1")
