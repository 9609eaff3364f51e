"""Hugging Face interop (marlin/hf.py, `marlin convert`): the official Hub layout, save_pretrained / push_to_hub,
and transformers VideoMAE both ways, measured against the real transformers classes. No network: Hub folders
and the huggingface_hub cache are built locally."""
import json

import numpy as np
import pytest
import torch
from helpers import tiny_config
from safetensors.torch import load_file as load_st
from safetensors.torch import save_file

from marlin import Marlin
from marlin.checkpoints import CheckpointError, videomae_head_order
from marlin.cli import main
from marlin.models import PRESETS, resolve_config


def needs(module):
    """The module of the hf extra a test needs, or skip the test (the core tests here need neither)."""
    return pytest.importorskip(module, reason=f"the hf extra ({module}) is not installed")

TOL = 1e-5
OFFICIAL_FIELDS = ["img_size", "patch_size", "n_frames", "encoder_embed_dim", "encoder_depth", "encoder_num_heads",
                   "decoder_embed_dim", "decoder_depth", "decoder_num_heads", "mlp_ratio", "qkv_bias", "qk_scale",
                   "drop_rate", "attn_drop_rate", "norm_layer", "init_values", "tubelet_size", "as_feature_extractor"]


@pytest.fixture()
def transformers():
    """transformers (skips without it), quiet: no load reports or progress bars."""
    tf = needs("transformers")
    tf.logging.set_verbosity_error()
    tf.utils.logging.disable_progress_bar()
    return tf


@pytest.fixture(scope="module")
def clip(fixtures_dir):
    return torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255


def official_hub_folder(folder, fixtures_dir):
    """A folder in the layout of ControlNet/marlin_vit_*_ytf (hf_src/publish_hf.py): config.json with the official
    MarlinConfig fields, model.safetensors with the official encoder keys prefixed `marlin.`."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = resolve_config(fixtures_dir / "tiny.yaml").to_dict()
    config = {"architectures": ["MarlinModel"], "auto_map": {"AutoConfig": "config.MarlinConfig",
                                                             "AutoModel": "marlin.MarlinModel"},
              **cfg, "as_feature_extractor": True, "model_type": "marlin", "torch_dtype": "float32",
              "transformers_version": "4.44.2"}
    assert sorted(k for k in config if k in OFFICIAL_FIELDS) == sorted(OFFICIAL_FIELDS)
    (folder / "config.json").write_text(json.dumps(config))
    sd = torch.load(fixtures_dir / "tiny.encoder.pt", weights_only=True)
    save_file({f"marlin.{k}": v.contiguous() for k, v in sd.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


def random_weights(model, seed=0):
    """Weights far from the initialisation (the fixture's rule): norms 1 + 0.1 N, matrices N / sqrt(fan_in), rest 0.1 N."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        n = torch.randn(p.shape, generator=g)
        if name.endswith(("norm1.weight", "norm2.weight", "norm.weight")):
            p.data = 1 + 0.1 * n
        elif p.dim() > 1 and not name.endswith("mask_token"):
            p.data = n / p[0].numel() ** 0.5
        else:
            p.data = 0.1 * n
    return model


def same_weights(a, b, tables=True):
    """Identical state dicts (``tables=False``: except the fixed sine-cosine tables)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa
                                          if tables or not k.endswith("pos_embedding.emb"))


def videomae_tables(model):
    """The model with the float64-computed sine-cosine tables that transformers' VideoMAE builds (the official
    release files hold a float32-computed table, up to 6.6e-5 away)."""
    from marlin.models.embedding import sincos_table

    for part in (model.encoder, model.decoder):
        if part is not None:
            emb = part.pos_embedding.emb
            emb.copy_(sincos_table(emb.shape[1], emb.shape[2]))
    return model


def vm_input(x):  # transformers' VideoMAE takes (B, T, C, H, W)
    return x.permute(0, 2, 1, 3, 4)


# ---- the official Hub layout -----------------------------------------------------------------------------
def test_official_hub_layout_by_path_matches_official_features(tmp_path, fixtures_dir, clip):
    model = Marlin.from_pretrained(official_hub_folder(tmp_path / "marlin_tiny", fixtures_dir))
    assert model.decoder is None
    seq = model.extract_features(clip, keep_seq=True)
    assert np.abs(seq.numpy() - np.load(fixtures_dir / "features_seq.npy")).max() <= 1e-4
    assert same_weights(model, Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt"))


def test_hub_id_through_local_cache_offline(tmp_path, fixtures_dir, monkeypatch):
    constants = needs("huggingface_hub.constants")

    commit = "a" * 40
    repo = tmp_path / "hub" / "models--ControlNet--marlin_tiny_ytf"
    official_hub_folder(repo / "snapshots" / commit, fixtures_dir)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = Marlin.from_pretrained("ControlNet/marlin_tiny_ytf")
    assert same_weights(model, Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt"))
    assert same_weights(model, Marlin.from_pretrained("ControlNet/marlin_tiny_ytf", revision=commit))
    with pytest.raises(CheckpointError, match=r"ControlNet/marlin_other_ytf: not a local folder.*could not be"):
        Marlin.from_pretrained("ControlNet/marlin_other_ytf")


def test_clear_errors_name_the_folder_and_problem(tmp_path, fixtures_dir):
    folder = official_hub_folder(tmp_path / "m", fixtures_dir)
    config = json.loads((folder / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"m: holds only the encoder; full=True"):
        Marlin.from_pretrained(folder, full=True)
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(CheckpointError, match=r"m: config.json has model_type 'bert'"):
        Marlin.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({**config, "encoder_embed_dim": 64, "encoder_num_heads": 4}))
    with pytest.raises(CheckpointError, match=r"(?s)m: checkpoint does not fit.*shape conflicts"):
        Marlin.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "tubelet_size"}))
    with pytest.raises(CheckpointError, match=r"lacks the MARLIN fields \['tubelet_size'\]"):
        Marlin.from_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"m: missing weights: no model.safetensors \(found pytorch_model.bin"):
        Marlin.from_pretrained(folder)
    with pytest.raises(CheckpointError, match=r"nowhere/at/all: no such folder"):
        Marlin.from_pretrained(str(tmp_path / "nowhere/at/all"))


# ---- save_pretrained / push_to_hub -----------------------------------------------------------------------
def test_save_pretrained_round_trip_and_card(tmp_path, fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt")
    model.training_record = {"data": "/data/ytf", "iterations": 1234, "config": {"mask_ratio": 0.9}}
    out = model.save_pretrained(tmp_path / "ours", license="cc-by-nc-4.0")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "marlin" and config["as_feature_extractor"] is False
    assert all(f in config for f in OFFICIAL_FIELDS)
    keys = load_st(str(out / "model.safetensors")).keys()
    assert all(k.startswith("marlin.") for k in keys) and "marlin.decoder.head.weight" in keys
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-nc-4.0\n") and "/data/ytf" in card and "mask_ratio: 0.9" in card
    assert "Marlin.from_pretrained" in card
    back = Marlin.from_pretrained(out, full=True)
    assert same_weights(back, model) and back.training_record["iterations"] == 1234
    enc = Marlin.from_pretrained(out)
    assert enc.decoder is None and all(torch.equal(v, model.state_dict()[k]) for k, v in enc.state_dict().items())


def test_push_to_hub_uploads_the_saved_folder(tmp_path, monkeypatch):
    huggingface_hub = needs("huggingface_hub")

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message, revision=None):
            files = sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())
            calls.append(("upload", repo_id, files, commit_message, revision))
            return "commit-info"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = Marlin(tiny_config(), full_model=False)
    assert model.push_to_hub("me/tiny", token="tok", private=True) == "commit-info"
    assert calls == [("init", "tok"), ("create", "me/tiny", True, True),
                     ("upload", "me/tiny", ["README.md", "config.json", "model.safetensors"],
                      "Upload MARLIN model", None)]


# ---- transformers VideoMAE ---------------------------------------------------------------------------------
def test_sincos_tables_equal_transformers(transformers):
    from transformers.models.videomae.modeling_videomae import (
        get_sinusoid_encoding_table,
    )

    from marlin.models.embedding import sincos_table

    for n, d in ((1568, 384), (1568, 48), (8, 16)):
        assert torch.equal(sincos_table(n, d), get_sinusoid_encoding_table(n, d))


def _check_videomae_parity(model, out, x, mask, tol=TOL):
    """Export ``model`` to ``out``; transformers' classes must match ours; returns the max |diff| seen."""
    from transformers import (
        VideoMAEForPreTraining,
        VideoMAEForVideoClassification,
        VideoMAEModel,
    )

    model.export_videomae(out)
    diffs = {}
    hf = VideoMAEModel.from_pretrained(out).eval()
    with torch.no_grad():
        seq = hf(vm_input(x)).last_hidden_state
    diffs["seq"] = (seq - model.extract_features(x, keep_seq=True)).abs().max().item()
    d = model.config.encoder_embed_dim
    cls = VideoMAEForVideoClassification.from_pretrained(out, use_mean_pooling=True, num_labels=d).eval()
    cls.classifier.weight.data = torch.eye(d)
    cls.classifier.bias.data.zero_()
    with torch.no_grad():
        pooled = cls(vm_input(x)).logits
    diffs["pooled"] = (pooled - model.extract_features(x, keep_seq=False)).abs().max().item()
    if model.decoder is not None:
        pre = VideoMAEForPreTraining.from_pretrained(out).eval()
        with torch.no_grad():
            logits = pre(vm_input(x), bool_masked_pos=~mask).logits
            ours = model(x, mask)
        order = videomae_head_order(model.config.patch_size, model.config.tubelet_size)
        diffs["reconstruction"] = (logits[..., order] - ours).abs().max().item()
    assert max(diffs.values()) <= tol, diffs
    back = Marlin.from_pretrained(out, full=model.decoder is not None)
    assert same_weights(back, model, tables=False)
    return diffs


def test_videomae_export_parity_official_fixture(tmp_path, fixtures_dir, clip, transformers):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt")
    mask = torch.from_numpy(np.load(fixtures_dir / "mask.npy"))
    # the official file's own float32 sine-cosine tables: transformers rebuilds its (float64) ones
    with pytest.warns(UserWarning, match=r"position tables differ .* by up to 6.6e-05"):
        diffs = _check_videomae_parity(model, tmp_path / "vm", clip, mask, tol=1e-4)
    print("tiny224 fixture, official tables, max |diff|:", diffs)
    # with the tables transformers builds, the mapping itself is exact to float32 rounding
    diffs = _check_videomae_parity(videomae_tables(model), tmp_path / "vm2", clip, mask)
    print("tiny224 fixture, VideoMAE tables, max |diff|:", diffs)
    assert same_weights(Marlin.from_pretrained(tmp_path / "vm2", full=True), model)
    config = json.loads((tmp_path / "vm" / "config.json").read_text())
    assert config["layer_norm_eps"] == 1e-5 and config["use_mean_pooling"] is False and config["qv_bias"] is True
    keys = load_st(str(tmp_path / "vm" / "model.safetensors")).keys()
    assert "videomae.encoder.layer.0.attention.attention.q_bias" in keys
    assert not any("key.bias" in k for k in keys)


def test_videomae_export_parity_preset_random(tmp_path, transformers):
    cfg = PRESETS["marlin_vit_small_ytf"].config
    model = random_weights(Marlin(cfg, full_model=True))
    x = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, cfg.num_tokens, dtype=torch.bool)
    mask[0, torch.randperm(cfg.num_tokens, generator=torch.Generator().manual_seed(2))[:157]] = True
    diffs = _check_videomae_parity(model, tmp_path / "vm", x, mask)
    print("marlin_vit_small_ytf (random) max |diff|:", diffs)


def test_videomae_no_qkv_bias_parity(tmp_path, transformers):
    model = random_weights(Marlin(tiny_config(qkv_bias=False), full_model=True))
    x = torch.rand(2, 3, 4, 32, 32)
    mask = torch.tensor([[True, False, False, True, False, True, False, False]] * 2)
    print("tiny, qkv_bias false, max |diff|:", _check_videomae_parity(model, tmp_path / "vm", x, mask))
    assert json.loads((tmp_path / "vm" / "config.json").read_text())["qv_bias"] is False


def test_videomae_refuses_what_it_cannot_express(tmp_path):
    with pytest.raises(CheckpointError, match="layer-scale"):
        Marlin(tiny_config(init_values=0.1), full_model=False).export_videomae(tmp_path / "a")
    with pytest.raises(CheckpointError, match="qk_scale"):
        Marlin(tiny_config(qk_scale=0.5), full_model=False).export_videomae(tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_import_folders_written_by_transformers(tmp_path, transformers):
    """Import direction checked against transformers' own files (not only our export): pretraining (prefixed keys,
    its head order), a bare VideoMAEModel (no prefix) and a mean-pooling classifier (fc_norm)."""
    from transformers import (
        VideoMAEConfig,
        VideoMAEForPreTraining,
        VideoMAEForVideoClassification,
        VideoMAEModel,
    )

    kw = {"image_size": 32, "num_frames": 4, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
          "intermediate_size": 64, "decoder_hidden_size": 8, "decoder_num_hidden_layers": 1,
          "decoder_num_attention_heads": 2, "decoder_intermediate_size": 32, "layer_norm_eps": 1e-5}
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 32, 32)
    mask = torch.tensor([[False, True, False, True, False, True, True, False]] * 2)
    pre = VideoMAEForPreTraining(VideoMAEConfig(**kw, use_mean_pooling=False)).eval()
    for p in pre.parameters():
        p.data.normal_(0, 0.2)
    pre.save_pretrained(tmp_path / "pre")
    ours = Marlin.from_pretrained(tmp_path / "pre", full=True)
    with torch.no_grad():
        logits = pre(vm_input(x), bool_masked_pos=~mask).logits
    order = videomae_head_order(16, 2)
    assert (logits[..., order] - ours(x, mask)).abs().max() <= TOL
    # the same weights with the in-memory names (query.bias / value.bias, as transformers 5 holds them)
    renamed = {k.replace("q_bias", "query.bias").replace("v_bias", "value.bias"): v
               for k, v in load_st(str(tmp_path / "pre" / "model.safetensors")).items()}
    save_file(renamed, str(tmp_path / "pre" / "model.safetensors"))
    assert same_weights(Marlin.from_pretrained(tmp_path / "pre", full=True), ours)
    bare = VideoMAEModel(VideoMAEConfig(**kw, use_mean_pooling=False)).eval()
    bare.load_state_dict(pre.videomae.state_dict())
    bare.save_pretrained(tmp_path / "bare")
    with torch.no_grad():
        seq = bare(vm_input(x)).last_hidden_state
    assert (seq - Marlin.from_pretrained(tmp_path / "bare").extract_features(x)).abs().max() <= TOL
    cls = VideoMAEForVideoClassification(VideoMAEConfig(**kw, use_mean_pooling=True, num_labels=16)).eval()
    for p in cls.parameters():
        p.data.normal_(0, 0.2)
    cls.classifier.weight.data, cls.classifier.bias.data = torch.eye(16), torch.zeros(16)
    cls.save_pretrained(tmp_path / "cls")
    with torch.no_grad():
        pooled = cls(vm_input(x)).logits
    assert (pooled - Marlin.from_pretrained(tmp_path / "cls").extract_features(x, keep_seq=False)).abs().max() <= TOL
    VideoMAEModel(VideoMAEConfig(**{**kw, "layer_norm_eps": 1e-12}, use_mean_pooling=False)).save_pretrained(
        tmp_path / "eps")
    with pytest.warns(UserWarning, match="layer_norm_eps 1e-12"):
        Marlin.from_pretrained(tmp_path / "eps")


def test_exported_encoder_fine_tunes_with_transformers(tmp_path, transformers):
    from transformers import VideoMAEForVideoClassification

    random_weights(Marlin(tiny_config(), full_model=False)).export_videomae(tmp_path / "vm")
    model = VideoMAEForVideoClassification.from_pretrained(tmp_path / "vm", use_mean_pooling=True, num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = vm_input(torch.rand(4, 3, 4, 32, 32)), torch.tensor([0, 1, 0, 1])
    before = model.videomae.embeddings.patch_embeddings.projection.weight.clone()
    losses = []
    for _ in range(2):
        loss = model(pixel_values=x, labels=y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert not torch.equal(before, model.videomae.embeddings.patch_embeddings.projection.weight)


# ---- marlin convert ----------------------------------------------------------------------------------------
def test_convert_to_official_from_hub_folder(tmp_path, fixtures_dir, capsys):
    folder = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt").save_pretrained(tmp_path / "hf")
    assert main(["convert", str(folder), str(tmp_path / "x.full.pt"), "--to", "official"]) == 0
    ref = torch.load(fixtures_dir / "tiny.full.pt", weights_only=True)
    got = torch.load(tmp_path / "x.full.pt", weights_only=True)
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert main(["convert", str(folder), str(tmp_path / "x.pt"), "--to", "official"]) == 2
    assert main(["convert", str(fixtures_dir / "tiny.full.pt"), str(tmp_path / "y.full.pt"), "--to", "official"]) == 2
    assert "add --model" in capsys.readouterr().err


def test_convert_to_hf_from_official_file(tmp_path, fixtures_dir):
    assert main(["convert", str(fixtures_dir / "tiny.full.pt"), str(tmp_path / "hf"), "--to", "hf",
                 "--model", str(fixtures_dir / "tiny.yaml"), "--encoder-only", "--license", "cc-by-nc-4.0"]) == 0
    back = Marlin.from_pretrained(tmp_path / "hf")
    assert same_weights(back, Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt"))
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["as_feature_extractor"] is True


@pytest.mark.filterwarnings("ignore:.*position tables differ")
def test_convert_to_videomae_from_official_hub_layout(tmp_path, fixtures_dir, clip, transformers):
    from transformers import VideoMAEModel

    folder = official_hub_folder(tmp_path / "official", fixtures_dir)
    assert main(["convert", str(folder), str(tmp_path / "vm"), "--to", "videomae"]) == 0
    with torch.no_grad():
        seq = VideoMAEModel.from_pretrained(tmp_path / "vm").eval()(vm_input(clip)).last_hidden_state
    assert np.abs(seq.numpy() - np.load(fixtures_dir / "features_seq.npy")).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:.*position tables differ")
def test_convert_to_safetensors_from_videomae_folder(tmp_path, fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt")
    model.export_videomae(tmp_path / "vm")
    assert main(["convert", str(tmp_path / "vm"), str(tmp_path / "m.safetensors"), "--to", "safetensors"]) == 0
    assert same_weights(Marlin.from_file(None, tmp_path / "m.safetensors"), model, tables=False)


def test_hub_id_without_the_extra_names_it(monkeypatch, capsys):
    import sys

    from marlin.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(MissingExtraError, match=r"needs the 'hf' extra"):
        Marlin.from_pretrained("ControlNet/marlin_vit_base_ytf")
    assert main(["convert", "ControlNet/marlin_vit_base_ytf", "x.encoder.pt", "--to", "official"]) == 3
    assert "pip install 'facemarlin-toolkit[hf]'" in capsys.readouterr().err
