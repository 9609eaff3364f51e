"""Parity of the model with outputs produced by the official MARLIN code (../shared/fixtures/official/tiny224)."""
import numpy as np
import pytest
import torch

from helpers import tiny_config
from marlin import Marlin
from marlin.models import MarlinConfig, PRESETS, patchify, resolve_config, scatter_tokens, unpatchify

TOL = 1e-4


@pytest.fixture(scope="module")
def inputs(fixtures_dir):
    x = torch.from_numpy(np.load(fixtures_dir / "clip.npy")).float() / 255
    mask = torch.from_numpy(np.load(fixtures_dir / "mask.npy"))
    return x, mask


@pytest.mark.parametrize("weights", ["tiny.full.pt", "tiny.encoder.pt", "tiny.ckpt"])
def test_official_parity(fixtures_dir, inputs, weights):
    x, mask = inputs
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / weights)
    assert (model.decoder is None) == (weights == "tiny.encoder.pt")
    seq = model.extract_features(x, keep_seq=True)
    pooled = model.extract_features(x, keep_seq=False)
    assert seq.shape == (1, 1568, 48) and pooled.shape == (1, 48)
    assert np.abs(seq.numpy() - np.load(fixtures_dir / "features_seq.npy")).max() <= TOL
    assert np.abs(pooled.numpy() - np.load(fixtures_dir / "features_pooled.npy")).max() <= TOL
    with torch.no_grad():
        vis = model.encoder(x, mask)
    assert np.abs(vis.numpy() - np.load(fixtures_dir / "encoder_masked.npy")).max() <= TOL
    if model.decoder is not None:
        expected = np.concatenate([np.load(fixtures_dir / f"reconstruction.part{i}.npy") for i in (0, 1)], axis=1)
        with torch.no_grad():
            rec = model(x, mask)
        assert rec.shape == (1, 1412, 1536)
        assert np.abs(rec.numpy() - expected).max() <= TOL
    for name in ("cropped01", "cropped05"):
        feats = model.extract_video(fixtures_dir / f"{name}.mp4")
        expected = np.load(fixtures_dir / f"{name}.features.npy")
        assert feats.shape == expected.shape
        assert np.abs(feats.numpy() - expected).max() <= TOL


def test_target_layout_matches_official(fixtures_dir, inputs):
    x, mask = inputs
    targets = patchify(x)[~mask].view(1, -1, 1536)
    assert np.abs(targets[:, :4].numpy() - np.load(fixtures_dir / "target_patches.npy")).max() <= 1e-6


def test_unpatchify_inverts_patchify():
    x = torch.rand(2, 3, 4, 32, 48)
    p = patchify(x, 16, 2)
    assert p.shape == (2, 2 * 2 * 3, 3 * 2 * 16 * 16)
    assert torch.equal(unpatchify(p, (2, 2, 3), 16, 2), x)


def test_scatter_tokens_puts_rows_back():
    mask = torch.tensor([[True, False, True, False]])
    out = scatter_tokens(torch.tensor([[[1.0], [3.0]]]), torch.tensor([[[2.0], [4.0]]]), mask)
    assert out.flatten().tolist() == [1.0, 2.0, 3.0, 4.0]


def test_presets_have_official_sizes():
    sizes = {n: (p.config.encoder_embed_dim, p.config.encoder_depth, p.config.encoder_num_heads,
                 p.config.decoder_embed_dim, p.config.decoder_depth, p.config.decoder_num_heads)
             for n, p in PRESETS.items()}
    assert sizes == {"marlin_vit_small_ytf": (384, 12, 6, 192, 4, 3), "marlin_vit_base_ytf": (768, 12, 12, 384, 4, 6),
                     "marlin_vit_large_ytf": (1024, 24, 16, 512, 12, 8)}
    for p in PRESETS.values():
        assert p.config.num_tokens == 1568 and p.config.patch_dim == 1536


def test_yaml_config(fixtures_dir):
    cfg = resolve_config(fixtures_dir / "tiny.yaml")
    assert (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.encoder_num_heads) == (48, 2, 3)
    assert (cfg.decoder_embed_dim, cfg.decoder_depth, cfg.decoder_num_heads) == (32, 1, 2)
    with pytest.raises(ValueError, match="unknown model"):
        resolve_config("marlin_vit_huge")


def test_layer_scale_gammas_scale_each_branch_and_load_from_official_keys(fixtures_dir, inputs, tmp_path):
    """Layer-scale (init_values > 0): per-channel gamma_1 / gamma_2 multiply each block's attention and MLP branches,
    x + g1 * attn(norm1(x)), then + g2 * mlp(norm2(x)), and are read from the official keys
    encoder.blocks.{i}.gamma_{1,2}. With every gamma 1 the official fixture (made without layer-scale) comes back."""
    cfg = tiny_config(init_values=0.1)
    model = Marlin(cfg)
    block = model.encoder.blocks[0]
    torch.manual_seed(0)
    with torch.no_grad():  # the block's formula, by hand, with gammas far from their initial value
        block.gamma_1.uniform_(-2, 2)
        block.gamma_2.uniform_(-2, 2)
        h = torch.randn(2, 8, cfg.encoder_embed_dim)
        mid = h + block.gamma_1 * block.attn(block.norm1(h))
        torch.testing.assert_close(block(h), mid + block.gamma_2 * block.mlp(block.norm2(mid)))
    x = torch.rand(2, 3, 4, 32, 32)  # the full model runs with layer-scale in encoder and decoder
    mask = torch.zeros(2, cfg.num_tokens, dtype=torch.bool)
    mask[:, :3] = True
    assert model(x, mask).shape == (2, cfg.num_tokens - 3, cfg.patch_dim)

    # an official-format encoder file: the fixture's tensors plus gamma keys, read with the YAML's init_values
    x, _ = inputs
    yaml_path = tmp_path / "tiny_ls.yaml"
    yaml_path.write_text((fixtures_dir / "tiny.yaml").read_text().replace("init_values: 0.0", "init_values: 0.1"))
    state = torch.load(fixtures_dir / "tiny.encoder.pt", weights_only=True)
    official = np.load(fixtures_dir / "features_seq.npy")

    def features_with(gammas: dict):
        torch.save({**state, **gammas}, tmp_path / "ls.encoder.pt")
        loaded = Marlin.from_file(yaml_path, tmp_path / "ls.encoder.pt")
        for key, value in gammas.items():
            assert torch.equal(loaded.state_dict()[key], value), key
        return loaded.extract_features(x, keep_seq=True).numpy()

    keys = [f"encoder.blocks.{i}.gamma_{k}" for i in range(2) for k in (1, 2)]
    assert np.abs(features_with({k: torch.ones(48) for k in keys}) - official).max() <= TOL
    g = torch.Generator().manual_seed(1)
    scaled = features_with({k: 0.5 + torch.rand(48, generator=g) for k in keys})
    assert np.abs(scaled - official).max() > 0.05  # the gammas are applied


def test_bad_shapes_and_dtypes_are_named():
    model = Marlin.from_config(tiny_config())
    with pytest.raises(ValueError, match=r"\(B, 3, 4, 32, 32\).*\(1, 3, 8, 32, 32\)"):
        model.extract_features(torch.rand(1, 3, 8, 32, 32))
    with pytest.raises(TypeError, match="uint8"):
        model.extract_features(torch.zeros(1, 3, 4, 32, 32, dtype=torch.uint8))
    x = torch.rand(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match="bool"):
        model(x, torch.ones(2, 8))
    uneven = torch.zeros(2, 8, dtype=torch.bool)
    uneven[0, :2] = True
    uneven[1, :3] = True
    with pytest.raises(ValueError, match="same number of visible tokens"):
        model(x, uneven)
    with pytest.raises(RuntimeError, match="encoder-only"):
        Marlin(model.config, full_model=False)(x, uneven)


def test_forward_and_extract_features_share_one_block_pass(fixtures_dir, inputs):
    """`forward_features` is the encoder's one loop over the blocks: `forward` norms its tokens, `extract_features`
    norms them or their mean; so the three agree to the bit, with and without a mask."""
    x, mask = inputs
    enc = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.encoder.pt").encoder.eval()
    with torch.no_grad():
        tokens = enc.forward_features(x)
        assert tokens.shape == (1, 1568, 48) and not torch.equal(tokens, enc.norm(tokens))  # before the norm
        assert torch.equal(enc(x), enc.norm(tokens))
        assert torch.equal(enc.extract_features(x, keep_seq=True), enc.norm(tokens))
        assert torch.equal(enc.extract_features(x, keep_seq=False), enc.norm(tokens.mean(1)))
        assert torch.equal(enc(x, mask), enc.norm(enc.forward_features(x, mask)))


def test_visible_only_embedding_equals_embedding_then_selecting():
    from marlin.masking import MaskSpec, make_masks

    torch.manual_seed(0)
    cfg = MarlinConfig(img_size=32, patch_size=8, n_frames=8, tubelet_size=2, encoder_embed_dim=24,
                       encoder_depth=1, encoder_num_heads=2)
    enc = Marlin(cfg, full_model=False).encoder
    x = torch.rand(3, 3, 8, 32, 32)
    mask = make_masks(MaskSpec("random", 0.75), 3, cfg.grid)
    full = enc.embed(x)[mask].view(3, -1, 24)
    vis = enc.patch_embedding.forward_visible(x, mask) + enc.pos_embedding.emb.expand(3, -1, -1)[mask].view(3, -1, 24)
    assert torch.allclose(full, vis, atol=1e-5)
    with pytest.raises(ValueError, match="mask"):
        enc(x, mask[:, :-1])


def test_sincos_table_is_built_with_numpy_as_the_official_code(monkeypatch):
    """torch's multi-threaded float64 sin / cos gave another table (1 ulp at ~40 entries) in some processes, so one
    seed pretrained two encoders; the table is built with NumPy, as the official code builds it."""
    from marlin.models.embedding import sincos_table

    expected = sincos_table(128, 192)

    def refuse(*args, **kwargs):
        raise AssertionError("the sine-cosine table went through a torch kernel")

    monkeypatch.setattr(torch, "sin", refuse)
    monkeypatch.setattr(torch, "cos", refuse)
    table = sincos_table(128, 192)
    assert table.dtype == torch.float32 and table.shape == (1, 128, 192)
    assert torch.equal(table, expected)
    angle = 70 / 10000 ** (2 * (37 // 2) / 192)  # one entry worked out by hand: position 70, channel 37 (cos)
    assert table[0, 70, 37].item() == pytest.approx(np.cos(angle), abs=1e-7)
