"""Checkpoint formats: official files, VideoMAE, our safetensors, exports, and safe loading."""
import os
import pickle
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import helpers
from marlin import Marlin
from marlin.checkpoints import CheckpointError, load_file, split_checkpoint


def tiny_config(**kw):
    return helpers.tiny_config(**{"encoder_depth": 2, **kw})


def clip_and_mask(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, cfg.n_frames, cfg.img_size, cfg.img_size, generator=g)
    mask = torch.zeros(1, cfg.num_tokens, dtype=torch.bool)
    mask[0, torch.randperm(cfg.num_tokens, generator=g)[:3]] = True
    return x, mask


def test_ckpt_keeps_critic_and_ignores_recorded_hparams(fixtures_dir):
    raw = load_file(fixtures_dir / "tiny.ckpt")
    model_sd, critic_sd, info = split_checkpoint(raw, "tiny.ckpt")
    assert info["kind"] == "lightning"
    assert info["hyper_parameters"]["d_steps"] == 3  # constructor default, not what training used
    assert set(critic_sd) == {"layers.0.linear.weight", "layers.0.linear.bias", "layers.1.linear.weight",
                              "layers.1.linear.bias"}
    from marlin.models import Critic
    from marlin.models.config import resolve_config

    critic = Critic(resolve_config(fixtures_dir / "tiny.yaml"))
    critic.load_state_dict(critic_sd)
    assert not any(k.startswith("discriminator.") for k in model_sd)


def test_safetensors_roundtrip_and_official_export(tmp_path, fixtures_dir):
    model = Marlin.from_file(fixtures_dir / "tiny.yaml", fixtures_dir / "tiny.full.pt")
    model.save(tmp_path / "m.safetensors", training={"step": 3})
    again = Marlin.from_file(None, tmp_path / "m.safetensors")  # the file alone rebuilds the model
    assert again.config == model.config
    x = torch.rand(1, 3, 16, 224, 224)
    assert torch.equal(model.extract_features(x, False), again.extract_features(x, False))
    model.export_official(tmp_path / "m.encoder.pt")
    model.export_official(tmp_path / "m.full.pt")
    enc = torch.load(tmp_path / "m.encoder.pt", weights_only=True)
    full = torch.load(tmp_path / "m.full.pt", weights_only=True)
    official = torch.load(fixtures_dir / "tiny.full.pt", weights_only=True)
    assert list(full) == list(official)  # same keys in the same order as the official layout
    assert all(k.startswith("encoder.") for k in enc)
    assert all(torch.equal(full[k], official[k]) for k in official)


def test_videomae_checkpoint_initialises_model(tmp_path):
    cfg = tiny_config()
    src = Marlin(cfg)
    rename = {"encoder.patch_embedding.projection.": "encoder.patch_embed.proj.", "enc_dec_proj.": "encoder_to_decoder.",
              "decoder.mask_token": "mask_token", "mlp.layers.0.linear.": "mlp.fc1.", "mlp.layers.1.linear.": "mlp.fc2."}
    vm = {}
    for k, v in src.state_dict().items():
        if k.endswith("pos_embedding.emb"):
            continue
        for a, b in rename.items():
            k = k.replace(a, b)
        vm[k] = v.clone()
    # VideoMAE's head emits (t, h, w, c)-ordered pixels; MARLIN's is channel-major (c, t, h, w).
    p, t = cfg.patch_size, cfg.tubelet_size
    to_videomae = torch.arange(cfg.patch_dim).view(3, t, p, p).permute(1, 2, 3, 0).reshape(-1)
    vm["decoder.head.weight"] = vm["decoder.head.weight"][to_videomae]
    vm["decoder.head.bias"] = vm["decoder.head.bias"][to_videomae]
    torch.save({"model": vm}, tmp_path / "videomae.pth")
    loaded = Marlin.from_file(cfg, tmp_path / "videomae.pth")
    x, mask = clip_and_mask(cfg)
    with torch.no_grad():
        assert torch.allclose(loaded(x, mask), src(x, mask), atol=1e-6)


def test_mismatch_lists_keys_and_suggests_config(fixtures_dir):
    with pytest.raises(CheckpointError) as e:
        Marlin.from_file("marlin_vit_small_ytf", fixtures_dir / "tiny.full.pt")
    msg = str(e.value)
    assert "tiny.full.pt" in msg and "missing keys" in msg and "shape conflicts" in msg and "\n" not in msg
    assert "encoder embed_dim 48, depth 2" in msg and "decoder embed_dim 32" in msg


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    payload = {"encoder.norm.weight": _Payload(marker)}
    if writer == "pickle":
        with open(bad, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="evil.pt.*refused"):
        Marlin.from_file("marlin_vit_small_ytf", bad)
    assert not marker.exists()


@pytest.mark.parametrize("content,problem", [(b"", "empty"), (b"not a checkpoint at all", "not a readable")])
def test_bad_checkpoint_files(tmp_path, content, problem):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"bad.pt.*{problem}"):
        load_file(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_file(tmp_path / "missing.pt")


class _RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (like GitHub's release CDN)."""

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.server.requests.append(rng)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def test_from_online_downloads_resumes_and_caches(tmp_path, monkeypatch, fixtures_dir):
    # Serve an official-layout encoder file (the tiny weights under the small preset's name would not fit,
    # so build a small-preset encoder file locally).
    serve = tmp_path / "release"
    serve.mkdir()
    model = Marlin.from_config("marlin_vit_small_ytf", full_model=False)
    model.export_official(serve / "marlin_vit_small_ytf.encoder.pt")
    blob = (serve / "marlin_vit_small_ytf.encoder.pt").read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "marlin_vit_small_ytf.encoder.pt.part").write_bytes(blob[: len(blob) // 3])  # an interrupted download
    monkeypatch.setenv("MARLIN_CACHE", str(cache))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(serve)))
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        loaded = Marlin.from_online("marlin_vit_small_ytf", base_url=url, progress=False)
        assert server.requests == [f"bytes={len(blob) // 3}-"]  # resumed, not restarted
        assert (cache / "marlin_vit_small_ytf.encoder.pt").read_bytes() == blob
        x = torch.rand(1, 3, 16, 224, 224)
        assert torch.equal(loaded.extract_features(x, False), model.extract_features(x, False))
        Marlin.from_online("marlin_vit_small_ytf", base_url=url, progress=False)
        assert len(server.requests) == 1  # cached: no second download
    finally:
        server.shutdown()
    Marlin.clean_cache(verbose=False)
    assert not cache.exists()


def test_from_online_failure_is_a_one_line_error(tmp_path, monkeypatch):
    """A release file the server does not have: a MarlinError naming the address, nothing left in the cache."""
    from marlin.errors import MarlinError

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("MARLIN_CACHE", str(tmp_path / "cache"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(tmp_path / "empty")))
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(MarlinError, match=r"marlin_vit_small_ytf\.encoder\.pt: download failed \(HTTP 404\)"):
            Marlin.from_online("marlin_vit_small_ytf", base_url=url, progress=False)
    finally:
        server.shutdown()
    assert not (tmp_path / "cache" / "marlin_vit_small_ytf.encoder.pt").exists()


def test_the_checkpoint_layer_does_not_import_the_model(tmp_path):
    """`marlin.checkpoints` sits below `marlin.models` (which loads and saves through it): it reads a model file's
    config as a dict, and `Marlin.from_file` rebuilds the MarlinConfig; a mismatch still names a matching preset."""
    import subprocess
    import sys

    code = ("import sys, marlin.checkpoints, marlin.extract; "
            "print(sorted(m for m in sys.modules if m.startswith('marlin.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    model = Marlin(tiny_config(), full_model=False)
    model.save(tmp_path / "m.safetensors")
    _, _, info = split_checkpoint(load_file(tmp_path / "m.safetensors"))
    assert info["config"] == model.config.to_dict()
    assert Marlin.from_file(None, tmp_path / "m.safetensors").config == model.config
    Marlin("marlin_vit_small_ytf", full_model=False).export_official(tmp_path / "s.encoder.pt")
    with pytest.raises(CheckpointError, match=r"encoder embed_dim 384, depth 12; 1568 tokens \(matches preset "
                                              r"marlin_vit_small_ytf\)"):
        Marlin.from_file(tiny_config(), tmp_path / "s.encoder.pt")


def test_our_own_lightning_checkpoint_loads(tmp_path):
    """`marlin pretrain`'s checkpoints/last.ckpt (generator under `model.`, critic under `critic.`) loads with
    `Marlin.from_file` like an official Lightning checkpoint: the weights are the run's export, the critic is
    split off for resuming."""
    import yaml

    from marlin.train import pretrain

    helpers.make_items(tmp_path / "items", n=2, t=20, s=32)
    res = pretrain(helpers.TINY_PRETRAIN, tmp_path / "items", tmp_path / "out", max_steps=1, progress=False,
                   tensorboard=False, mask_picture=False)
    yaml_path = tmp_path / "t.yaml"
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in helpers.TINY_PRETRAIN.items() if k != "trainer"}))
    model = Marlin.from_file(str(yaml_path), res.checkpoint)
    exported = Marlin.from_file(None, res.exports["safetensors"])
    assert model.decoder is not None
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(exported.state_dict().items())):
        assert torch.equal(a, b), k
    _, critic, info = split_checkpoint(load_file(res.checkpoint))
    assert info["kind"] == "lightning-ours" and critic and all(not k.startswith("critic.") for k in critic)
