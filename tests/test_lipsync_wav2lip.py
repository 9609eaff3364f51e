"""Wav2Lip's released weights (lipsync_expert.pth, wav2lip.pth / wav2lip_gan.pth, visual_quality_disc.pth) load
into our modules and compute what Wav2Lip's networks compute.

The upstream structure is restated below from Rudrabha/Wav2Lip models/syncnet.py, models/wav2lip.py and
models/conv.py, in upstream terms and names (independently of marlin.lipsync.wav2lip's tables): the parameter
names and shapes of a released file are generated from it, and a functional forward pass over a state dict in
upstream names is the reference that our modules must match after the name map.
"""
import collections
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from marlin.checkpoints import CheckpointError


# Line format: KIND cin cout kernel stride padding [r | op=N]. KIND: C = conv_block.0 Conv2d + conv_block.1
# BatchNorm2d + ReLU ("r": residual, input added before the ReLU); T = ConvTranspose2d + BatchNorm2d + ReLU
# ("op": output_padding); N = conv_block.0 Conv2d + LeakyReLU(0.01); P = a plain Conv2d. Strides/kernels "a,b".
# "--" separates the stages of an nn.ModuleList of nn.Sequential.
AUDIO = """C 1 32 3 1 1|C 32 32 3 1 1 r|C 32 32 3 1 1 r|C 32 64 3 3,1 1|C 64 64 3 1 1 r|C 64 64 3 1 1 r|
C 64 128 3 3 1|C 128 128 3 1 1 r|C 128 128 3 1 1 r|C 128 256 3 3,2 1|C 256 256 3 1 1 r|{extra}C 256 512 3 1 0|
C 512 512 1 1 0"""
UPSTREAM = {
    "syncnet": {
        "face_encoder": """C 15 32 7 1 3|C 32 64 5 1,2 1|C 64 64 3 1 1 r|C 64 64 3 1 1 r|C 64 128 3 2 1|
            C 128 128 3 1 1 r|C 128 128 3 1 1 r|C 128 128 3 1 1 r|C 128 256 3 2 1|C 256 256 3 1 1 r|
            C 256 256 3 1 1 r|C 256 512 3 2 1|C 512 512 3 1 1 r|C 512 512 3 1 1 r|C 512 512 3 2 1|C 512 512 3 1 0|
            C 512 512 1 1 0""",
        "audio_encoder": AUDIO.format(extra="C 256 256 3 1 1 r|"),
    },
    "generator": {
        "face_encoder_blocks": """C 6 16 7 1 3 -- C 16 32 3 2 1|C 32 32 3 1 1 r|C 32 32 3 1 1 r --
            C 32 64 3 2 1|C 64 64 3 1 1 r|C 64 64 3 1 1 r|C 64 64 3 1 1 r --
            C 64 128 3 2 1|C 128 128 3 1 1 r|C 128 128 3 1 1 r -- C 128 256 3 2 1|C 256 256 3 1 1 r|C 256 256 3 1 1 r
            -- C 256 512 3 2 1|C 512 512 3 1 1 r -- C 512 512 3 1 0|C 512 512 1 1 0""",
        "audio_encoder": AUDIO.format(extra=""),
        "face_decoder_blocks": """C 512 512 1 1 0 -- T 1024 512 3 1 0|C 512 512 3 1 1 r --
            T 1024 512 3 2 1 op=1|C 512 512 3 1 1 r|C 512 512 3 1 1 r -- T 768 384 3 2 1 op=1|C 384 384 3 1 1 r|
            C 384 384 3 1 1 r -- T 512 256 3 2 1 op=1|C 256 256 3 1 1 r|C 256 256 3 1 1 r --
            T 320 128 3 2 1 op=1|C 128 128 3 1 1 r|C 128 128 3 1 1 r --
            T 160 64 3 2 1 op=1|C 64 64 3 1 1 r|C 64 64 3 1 1 r""",
        "output_block": "C 80 32 3 1 1|P 32 3 1 1 0",
    },
    "disc": {
        "face_encoder_blocks": """N 3 32 7 1 3 -- N 32 64 5 1,2 2|N 64 64 5 1 2 -- N 64 128 5 2 2|N 128 128 5 1 2 --
            N 128 256 5 2 2|N 256 256 5 1 2 -- N 256 512 3 2 1|N 512 512 3 1 1 -- N 512 512 3 2 1|N 512 512 3 1 1 --
            N 512 512 3 1 0|N 512 512 1 1 0""",
        "binary_pred": "P 512 1 1 1 0",
    },
}


def _pair(text):
    v = tuple(int(x) for x in text.split(","))
    return v if len(v) > 1 else v[0]


def _layers(spec: str):
    """-> list of stages (None when the module is a flat Sequential), each a list of layer dicts."""
    stages = [s for s in spec.replace("\n", " ").split("--")]
    out = []
    for stage in stages:
        layers = []
        for line in stage.split("|"):
            tok = line.split()
            if not tok:
                continue
            kind, ci, co, k, s, p = tok[0], int(tok[1]), int(tok[2]), _pair(tok[3]), _pair(tok[4]), _pair(tok[5])
            extra = tok[6:]
            op = next((int(x[3:]) for x in extra if x.startswith("op=")), 0)
            layers.append({"kind": kind, "ci": ci, "co": co, "k": k, "s": s, "p": p, "res": "r" in extra, "op": op})
        out.append(layers)
    return out if len(out) > 1 else out[0]


def _names(module: str, spec: str):
    """[(upstream prefix of the layer, layer)] in forward order, and the stage boundaries."""
    parsed = _layers(spec)
    nested = isinstance(parsed[0], list)
    items = []
    for i, stage in enumerate(parsed if nested else [parsed]):
        for j, layer in enumerate(stage):
            items.append((f"{module}.{i}.{j}" if nested else f"{module}.{j}", layer, i))
    return items


def upstream_keys(network: str) -> dict:
    """{name: shape} of the released file's state dict."""
    keys = {}
    for module, spec in UPSTREAM[network].items():
        for prefix, L, _ in _names(module, spec):
            k = L["k"] if isinstance(L["k"], tuple) else (L["k"], L["k"])
            w = (L["ci"], L["co"], *k) if L["kind"] == "T" else (L["co"], L["ci"], *k)
            if L["kind"] == "P":
                keys[f"{prefix}.weight"], keys[f"{prefix}.bias"] = w, (L["co"],)
                continue
            keys[f"{prefix}.conv_block.0.weight"], keys[f"{prefix}.conv_block.0.bias"] = w, (L["co"],)
            if L["kind"] in "CT":
                for n in ("weight", "bias", "running_mean", "running_var"):
                    keys[f"{prefix}.conv_block.1.{n}"] = (L["co"],)
                keys[f"{prefix}.conv_block.1.num_batches_tracked"] = ()
    return keys


GAIN = 1.0


def fabricate(network: str, seed: int = 0) -> collections.OrderedDict:
    """Random values with exactly the upstream names and shapes (scaled so that activations stay moderate)."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for name, shape in upstream_keys(network).items():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith("conv_block.1.weight"):
            sd[name] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif name.endswith(("bias", "running_mean")):
            sd[name] = torch.randn(shape, generator=g) * 0.05
        else:  # conv weights: (out, in, kh, kw), transposed ones (in, out, kh, kw)
            transposed = re.match(r"face_decoder_blocks\.[1-9]\.0\.", name) is not None
            fan_in = (shape[0] if transposed else shape[1]) * shape[2] * shape[3]
            sd[name] = torch.randn(shape, generator=g) * (GAIN / fan_in) ** 0.5
    return sd


# ---- the reference: upstream forward passes, functional, over a state dict in upstream names ----------------------
def _layer(sd, prefix, L, x):
    if L["kind"] == "P":
        return F.conv2d(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], L["s"], L["p"])
    w, b = sd[f"{prefix}.conv_block.0.weight"], sd[f"{prefix}.conv_block.0.bias"]
    if L["kind"] == "T":
        y = F.conv_transpose2d(x, w, b, L["s"], L["p"], L["op"])
    else:
        y = F.conv2d(x, w, b, L["s"], L["p"])
    if L["kind"] == "N":
        return F.leaky_relu(y, 0.01)
    bn = f"{prefix}.conv_block.1"
    y = F.batch_norm(y, sd[f"{bn}.running_mean"], sd[f"{bn}.running_var"], sd[f"{bn}.weight"], sd[f"{bn}.bias"],
                     training=False, eps=1e-5)
    return F.relu(y + x if L["res"] else y)


def _stages(sd, network, module, x):
    """Run a ModuleList of Sequentials; yield each stage's output."""
    stage_outs, cur = [], None
    for prefix, L, i in _names(module, UPSTREAM[network][module]):
        if cur is not None and i != cur:
            stage_outs.append(x)
        cur = i
        x = _layer(sd, prefix, L, x)
    return stage_outs + [x]


def ref_syncnet(sd, faces_bgr, mel):
    """SyncNet_color.forward: (B, 15, 48, 96) BGR, (B, 1, 80, 16) -> (audio, face) unit embeddings."""
    v = _stages(sd, "syncnet", "face_encoder", faces_bgr)[-1].flatten(1)
    a = _stages(sd, "syncnet", "audio_encoder", mel)[-1].flatten(1)
    return F.normalize(a, p=2, dim=1), F.normalize(v, p=2, dim=1)


def ref_wav2lip(sd, mel, faces_bgr):
    """Wav2Lip.forward on 4-D input: mel (N, 1, 80, 16), faces (N, 6, 96, 96) BGR -> (N, 3, 96, 96) BGR."""
    audio = _stages(sd, "generator", "audio_encoder", mel)[-1]
    feats = _stages(sd, "generator", "face_encoder_blocks", faces_bgr)
    x = audio
    items = _names("face_decoder_blocks", UPSTREAM["generator"]["face_decoder_blocks"])
    for i in range(len(feats)):
        for prefix, L, _ in [it for it in items if it[2] == i]:
            x = _layer(sd, prefix, L, x)
        x = torch.cat((x, feats[-1]), dim=1)
        feats.pop()
    for prefix, L, _ in _names("output_block", UPSTREAM["generator"]["output_block"]):
        x = _layer(sd, prefix, L, x)
    return torch.sigmoid(x)


def ref_disc(sd, faces_bgr):
    """Wav2Lip_disc_qual.forward on frames (N, 3, 96, 96) BGR: lower half -> (N, 1)."""
    x = _stages(sd, "disc", "face_encoder_blocks", faces_bgr[:, :, faces_bgr.size(2) // 2:])[-1]
    return torch.sigmoid(_layer(sd, "binary_pred.0", {"kind": "P", "s": 1, "p": 0}, x)).view(len(x), -1)


def _released_file(path, sd, prefix="", legacy=True):
    """A file as Wav2Lip's training scripts save it (optionally from DataParallel, in the pre-zip format)."""
    torch.save({"state_dict": collections.OrderedDict((prefix + k, v) for k, v in sd.items()),
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999), "params": [0]}]},
                "global_step": 123, "global_epoch": 4}, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    d = tmp_path_factory.mktemp("w2l")
    sds = {n: fabricate(n, seed) for seed, n in enumerate(["syncnet", "generator", "disc"])}
    files = {"syncnet": _released_file(d / "lipsync_expert.pth", sds["syncnet"], "module.", legacy=True),
             "generator": _released_file(d / "wav2lip_gan.pth", sds["generator"], "", legacy=False),
             "disc": _released_file(d / "visual_quality_disc.pth", sds["disc"], "module.", legacy=False)}
    return d, sds, files


def test_upstream_key_table_maps_onto_our_modules_exactly():
    from marlin.lipsync.generator import Generator, GeneratorConfig
    from marlin.lipsync.syncnet import SyncNet, SyncNetConfig
    from marlin.lipsync.wav2lip import Wav2LipDiscriminator, rename

    nets = {"syncnet": SyncNet(SyncNetConfig(arch="wav2lip")), "generator": Generator(GeneratorConfig("wav2lip")),
            "disc": Wav2LipDiscriminator()}
    counts = {}
    for network, net in nets.items():
        keys = upstream_keys(network)
        ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        mapped = {k2: keys[k] for k, k2 in zip(keys, rename(dict.fromkeys(keys), network))}
        assert mapped == ours  # no missing, no unexpected key, every shape equal
        counts[network] = sum(int(np.prod(s)) for k, s in keys.items() if "running" not in k and "num_b" not in k)
    # parameter counts of the upstream SyncNet_color, Wav2Lip, Wav2Lip_disc_qual (counted once from their code)
    assert counts == {"syncnet": 16_435_072, "generator": 36_298_035, "disc": 14_113_793}


def test_released_syncnet_matches_upstream_forward(released):
    from marlin.lipsync.train import load_syncnet

    _, sds, files = released
    net = load_syncnet(files["syncnet"])  # pre-zip torch file, DataParallel names, read weights-only
    assert net.config.arch == "wav2lip" and net.window == 5
    torch.manual_seed(0)
    faces = torch.rand(3, 5, 3, 48, 96)  # RGB lower halves, our layout
    mel = torch.randn(3, 1, 80, 16)
    bgr = torch.cat([faces[:, i].flip(1) for i in range(5)], dim=1)  # upstream: frames on channels
    with torch.no_grad():
        a_ref, v_ref = ref_syncnet(sds["syncnet"], bgr, mel)
        v, a = net(faces, mel)
    assert v_ref.std() > 1e-3 and a_ref.std() > 1e-3
    torch.testing.assert_close(v, v_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a, a_ref, atol=1e-5, rtol=1e-4)


def test_released_generator_matches_upstream_forward(released):
    from marlin.lipsync.train import load_generator

    _, sds, files = released
    gen = load_generator(files["generator"])
    assert gen.config.encoder == "wav2lip" and gen.config.face_size == 96
    torch.manual_seed(1)
    inputs = torch.rand(1, 5, 6, 96, 96)  # RGB masked ++ reference
    inputs[:, :, :3, 48:] = 0
    chunks = torch.randn(1, 5, 1, 80, 16)
    with torch.no_grad():
        out = gen(inputs, chunks)[0]  # (5, 3, 96, 96) RGB, the whole face
        bgr = torch.cat([inputs[0, :, :3].flip(1), inputs[0, :, 3:].flip(1)], 1)  # (5, 6, 96, 96)
        ref = ref_wav2lip(sds["generator"], chunks[0], bgr)
    ref = ref.flip(1)  # BGR -> RGB
    assert 0.01 < ref.std() and 0.02 < ref.mean() < 0.98  # not saturated: the comparison means something
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_released_discriminator_matches_upstream_forward(released):
    from marlin.lipsync.train import load_discriminator_weights
    from marlin.lipsync.wav2lip import Wav2LipDiscriminator

    _, sds, files = released
    disc = Wav2LipDiscriminator().eval()
    load_discriminator_weights(disc, files["disc"])
    torch.manual_seed(2)
    faces = torch.rand(4, 3, 96, 96)
    with torch.no_grad():
        ref = ref_disc(sds["disc"], faces.flip(1))[:, 0]
        got = disc(faces[:, :, 48:])
    torch.testing.assert_close(got, ref.clamp(1e-7, 1 - 1e-7), atol=1e-6, rtol=1e-4)


def test_wrong_files_give_errors_naming_the_file(released, tmp_path):
    from marlin.lipsync.train import load_lipsync_checkpoint, load_generator, load_syncnet

    _, sds, files = released
    with pytest.raises(CheckpointError, match=r"wav2lip_gan\.pth: holds Wav2Lip's wav2lip\.pth.*expected lipsync"):
        load_syncnet(files["generator"])
    with pytest.raises(CheckpointError, match=r"lipsync_expert\.pth: holds .*SyncNet_color.*expected wav2lip\.pth"):
        load_generator(files["syncnet"])
    with pytest.raises(CheckpointError, match=r"visual_quality_disc\.pth: holds"):
        load_generator(files["disc"])
    cut = {k: v for k, v in sds["generator"].items() if not k.startswith("face_decoder_blocks.6.")}
    with pytest.raises(CheckpointError, match=r"cut\.pth: does not fit Wav2Lip's wav2lip\.pth.*: "
                                              r"missing keys \(\d+\): face\.up\.6\.0\.conv\.0\.weight"):
        load_generator(_released_file(tmp_path / "cut.pth", cut))
    wide = dict(sds["syncnet"], **{"face_encoder.0.conv_block.0.weight": torch.zeros(32, 15, 5, 5)})
    with pytest.raises(CheckpointError, match=r"wide\.pth: .*shape conflicts \(1\): face\.0\.conv\.0\.weight: file"):
        load_syncnet(_released_file(tmp_path / "wide.pth", wide))
    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other\.pth: not a lipsync checkpoint"):
        load_generator(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"wav2lip_gan\.pth: is one of Wav2Lip's released files"):
        load_lipsync_checkpoint(files["generator"], "generator")


def test_released_generator_uses_wav2lip_inference_audio_alignment(released):
    """Wav2Lip's inference gives frame i the mel chunk starting at step int(80 i / fps)."""
    from marlin.lipsync.infer import generate
    from marlin.lipsync.mel import melspectrogram
    from marlin.lipsync.toy import talking_clip
    from marlin.lipsync.train import load_generator

    gen = load_generator(released[2]["generator"])
    seen = []
    forward = gen.forward
    gen.forward = lambda inputs, chunks: (seen.append(chunks), forward(inputs, chunks))[1]
    faces, audio, _ = talking_clip(8, 96, seed=1)
    out = generate(gen, faces, audio, 25.0, batch=4, progress=False)
    assert out.shape == (8, 96, 96, 3)
    mel = melspectrogram(audio)
    chunks = torch.cat(seen).flatten(0, 1)[:, 0].numpy()  # windows of 5 frames: 0..4, 5..7 (+ repeats)
    for i in (0, 2, 3):  # (the last frames: Wav2Lip takes the last 16 steps, we repeat the edge column)
        np.testing.assert_array_equal(chunks[i], mel[:, int(80 * i / 25):int(80 * i / 25) + 16])


def test_cli_runs_the_wav2lip_row_from_released_files(released, tmp_path, monkeypatch):
    """infer with wav2lip_gan.pth, evaluate with lipsync_expert.pth, and fine-tuning from the released files."""
    from marlin.cli import main
    from marlin.lipsync.audio import write_video_with_audio
    from marlin.lipsync.toy import talking_clip

    monkeypatch.setenv("TQDM_DISABLE", "1")
    files = released[2]
    faces, audio, _ = talking_clip(7, 96, seed=3)
    write_video_with_audio(tmp_path / "lrs2/main/1/00001.mp4", faces, audio)
    (tmp_path / "lrs2/train.txt").write_text("1/00001\n")
    out = tmp_path / "gen/a.mp4"
    assert main(["lipsync", "infer", "--checkpoint", str(files["generator"]), "--face",
                 str(tmp_path / "lrs2/main/1/00001.mp4"), "--audio", str(tmp_path / "lrs2/main/1/00001.mp4"),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert main(["lipsync", "evaluate", "--syncnet", str(files["syncnet"]), "--videos", str(tmp_path / "gen"),
                 "--out", str(tmp_path / "ev"), "--vshift", "2", "--device", "cpu"]) == 0
    # fine-tuning starts from the released generator and discriminator (one frame per sample: fast)
    assert main(["lipsync", "train", "--data", str(tmp_path / "lrs2"), "--encoder", "wav2lip", "--window", "1",
                 "--init", str(files["generator"]), "--disc-init", str(files["disc"]), "--sync-wt", "0",
                 "--out", str(tmp_path / "ft.pt"), "--steps", "1", "--batch", "2", "--device", "cpu"]) == 0
    assert main(["lipsync", "infer", "--checkpoint", str(files["syncnet"]), "--face", str(out), "--audio",
                 str(out), "--out", str(tmp_path / "x.mp4")]) == 2  # the expert is no generator: one clear line
