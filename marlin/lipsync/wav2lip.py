"""Wav2Lip's released networks (Prajwal et al., ACM MM 2020; github.com/Rudrabha/Wav2Lip), so that its released
weights run here without retraining: SyncNet_color (``lipsync_expert.pth``), the generator (``wav2lip.pth``,
``wav2lip_gan.pth``) and the visual-quality discriminator (``visual_quality_disc.pth``).

The layer tables below restate the architectures of Wav2Lip's models/syncnet.py, models/wav2lip.py and
models/conv.py (read, not copied): every ``Conv2d`` there is conv + BatchNorm + ReLU (residual blocks add their
input before the ReLU), ``Conv2dTranspose`` is transposed conv + BatchNorm + ReLU, ``nonorm_Conv2d`` is conv +
LeakyReLU(0.01). Our modules use the toolkit's `ConvBlock` names (``conv.0`` conv, ``conv.1`` BatchNorm);
`RENAMES` maps the released parameter names onto them.

Released files are ``{"state_dict", "optimizer", "global_step", "global_epoch"}`` dicts (some saved from
DataParallel, with ``module.`` prefixes) and are read weights-only. Wav2Lip reads frames with OpenCV (BGR); these
modules take RGB like the rest of the toolkit and flip the channels inside.
"""
from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from .blocks import ConvBlock

# ---- layer tables: (cin, cout, kernel, stride, padding, residual) of conv + BatchNorm + ReLU blocks ----------


def _res(c: int, n: int) -> list[tuple]:
    return [(c, c, 3, 1, 1, True)] * n


def _audio_table(res_256: int) -> list[tuple]:
    """The audio encoder on a (1, 80, 16) mel window; SyncNet has 2 residual blocks at 256 channels, Wav2Lip 1."""
    return [(1, 32, 3, 1, 1, False), *_res(32, 2), (32, 64, 3, (3, 1), 1, False), *_res(64, 2),
            (64, 128, 3, 3, 1, False), *_res(128, 2), (128, 256, 3, (3, 2), 1, False), *_res(256, res_256),
            (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False)]


SYNC_FACE = [(15, 32, 7, 1, 3, False), (32, 64, 5, (1, 2), 1, False), *_res(64, 2), (64, 128, 3, 2, 1, False),
             *_res(128, 3), (128, 256, 3, 2, 1, False), *_res(256, 2), (256, 512, 3, 2, 1, False), *_res(512, 2),
             (512, 512, 3, 2, 1, False), (512, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False)]  # (15, 48, 96) -> 1x1
SYNC_AUDIO = _audio_table(2)
GEN_AUDIO = _audio_table(1)
GEN_DOWN = [  # face encoder stages, 96 -> 96, 48, 24, 12, 6, 3, 1 (each stage's output is a skip)
    [(6, 16, 7, 1, 3, False)],
    [(16, 32, 3, 2, 1, False), *_res(32, 2)],
    [(32, 64, 3, 2, 1, False), *_res(64, 3)],
    [(64, 128, 3, 2, 1, False), *_res(128, 2)],
    [(128, 256, 3, 2, 1, False), *_res(256, 2)],
    [(256, 512, 3, 2, 1, False), *_res(512, 1)],
    [(512, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False)]]
GEN_UP0 = [(512, 512, 1, 1, 0, False)]  # first decoder stage, on the audio embedding (1x1)
# later decoder stages: a transposed conv (cin, cout, kernel, stride, padding, output_padding), then residuals
GEN_UP = [((1024, 512, 3, 1, 0, 0), _res(512, 1)), ((1024, 512, 3, 2, 1, 1), _res(512, 2)),
          ((768, 384, 3, 2, 1, 1), _res(384, 2)), ((512, 256, 3, 2, 1, 1), _res(256, 2)),
          ((320, 128, 3, 2, 1, 1), _res(128, 2)), ((160, 64, 3, 2, 1, 1), _res(64, 2))]
GEN_OUT = (80, 32, 3, 1, 1, False)  # then a plain 1x1 conv to 3 channels and a sigmoid
# discriminator stages of conv + LeakyReLU(0.01): (cin, cout, kernel, stride, padding); (3, 48, 96) -> 1x1
DISC = [[(3, 32, 7, 1, 3)], [(32, 64, 5, (1, 2), 2), (64, 64, 5, 1, 2)], [(64, 128, 5, 2, 2), (128, 128, 5, 1, 2)],
        [(128, 256, 5, 2, 2), (256, 256, 5, 1, 2)], [(256, 512, 3, 2, 1), (512, 512, 3, 1, 1)],
        [(512, 512, 3, 2, 1), (512, 512, 3, 1, 1)], [(512, 512, 3, 1, 0), (512, 512, 1, 1, 0)]]

FACE_SIZE, WINDOW = 96, 5  # the released networks see 96 px faces; SyncNet 5-frame windows


def _blocks(table) -> list[ConvBlock]:
    return [ConvBlock(ci, co, k, s, r, padding=p) for ci, co, k, s, p, r in table]


def _bgr(x: Tensor, dim: int) -> Tensor:
    """Swap R and B of every 3-channel group along ``dim`` (RGB <-> BGR)."""
    shape = x.shape
    x = x.unflatten(dim, (shape[dim] // 3, 3))
    return x.flip(dim + 1).flatten(dim, dim + 1)


# ---- modules -------------------------------------------------------------------------------------------------
def syncnet_stacks() -> tuple[nn.Sequential, nn.Sequential]:
    """SyncNet_color's face encoder ((N, 15, 48, 96) BGR -> (N, 512)) and audio encoder ((N, 1, 80, 16) -> (N, 512))."""
    return nn.Sequential(*_blocks(SYNC_FACE), nn.Flatten()), nn.Sequential(*_blocks(SYNC_AUDIO), nn.Flatten())


class Wav2LipAudio(nn.Module):
    """Wav2Lip's audio encoder: per-frame mel chunk (N, 1, 80, 16) -> (N, 512)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(*_blocks(GEN_AUDIO))

    def forward(self, mel: Tensor) -> Tensor:
        return self.net(mel).flatten(1)


class Wav2LipCodec(nn.Module):
    """Wav2Lip's face encoder / decoder with skips: (N, 6, 96, 96) RGB masked ++ reference, audio (N, 512) ->
    (N, 3, 96, 96) RGB, the whole face."""

    def __init__(self):
        super().__init__()
        self.down = nn.ModuleList(nn.Sequential(*_blocks(stage)) for stage in GEN_DOWN)
        ups = [nn.Sequential(*_blocks(GEN_UP0))]
        for (ci, co, k, s, p, op), res in GEN_UP:
            ups.append(nn.Sequential(ConvBlock(ci, co, k, s, transpose=True, padding=p, output_padding=op),
                                     *_blocks(res)))
        self.up = nn.ModuleList(ups)
        self.out = nn.Sequential(*_blocks([GEN_OUT]), nn.Conv2d(GEN_OUT[1], 3, 1), nn.Sigmoid())

    def forward(self, faces: Tensor, audio: Tensor) -> Tensor:
        x, skips = _bgr(faces, 1), []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        x = audio[:, :, None, None]
        for stage, skip in zip(self.up, reversed(skips)):
            x = torch.cat([stage(x), skip], 1)
        return _bgr(self.out(x), 1)


class Wav2LipDiscriminator(nn.Module):
    """Wav2Lip_disc_qual: lower halves (N, 3, 48, 96) RGB in [0, 1] -> P(real) (N,)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(*(ConvBlock(ci, co, k, s, padding=p, norm=False, leaky=True, slope=0.01)
                            for ci, co, k, s, p in stage)) for stage in DISC)
        self.pred = nn.Sequential(nn.Conv2d(512, 1, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        x = _bgr(x, 1)
        for stage in self.blocks:
            x = stage(x)
        return self.pred(x).flatten().clamp(1e-7, 1 - 1e-7)


# ---- the released files ------------------------------------------------------------------------------------------
# released parameter names -> ours, per network (applied in order)
RENAMES = {
    "syncnet": [(r"^face_encoder\.", "face."), (r"^audio_encoder\.", "audio."), (r"\.conv_block\.", ".conv.")],
    "generator": [(r"^audio_encoder\.", "audio.net."), (r"^face_encoder_blocks\.", "face.down."),
                  (r"^face_decoder_blocks\.", "face.up."), (r"^output_block\.", "face.out."),
                  (r"\.conv_block\.", ".conv.")],
    "disc": [(r"^face_encoder_blocks\.", "blocks."), (r"^binary_pred\.", "pred."), (r"\.conv_block\.0\.", ".conv.")],
}
# a parameter only that network's file holds (checked in this order: the generator also has audio_encoder.*)
MARKERS = {"generator": "output_block.1.weight", "disc": "binary_pred.0.weight",
           "syncnet": "face_encoder.0.conv_block.0.weight"}
FILES = {"syncnet": "lipsync_expert.pth (SyncNet_color)", "generator": "wav2lip.pth / wav2lip_gan.pth (Wav2Lip)",
         "disc": "visual_quality_disc.pth (Wav2Lip_disc_qual)"}


def released_state(raw) -> dict | None:
    """The state dict of a released Wav2Lip file (``module.`` prefixes removed), or None when ``raw`` is not one."""
    if not isinstance(raw, dict) or raw.get("__safetensors__"):
        return None
    sd = raw["state_dict"] if isinstance(raw.get("state_dict"), dict) else raw
    sd = {(k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k): v for k, v in sd.items()}
    return sd if any(m in sd for m in MARKERS.values()) else None


def released_network(sd: dict) -> str:
    """Which network a released state dict holds: "generator", "disc" or "syncnet"."""
    return next(kind for kind, marker in MARKERS.items() if marker in sd)


def rename(sd: dict, network: str) -> dict:
    """Released parameter names -> our module's names."""
    out = {}
    for k, v in sd.items():
        for pattern, repl in RENAMES[network]:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def load_released(module: nn.Module, sd: dict, network: str, source) -> nn.Module:
    """Load a released state dict (Wav2Lip's names) into ``module``; any missing or unexpected parameter or shape
    conflict is one error naming the file. Files older than BatchNorm's ``num_batches_tracked`` still load."""
    from ..checkpoints import CheckpointError, load_into

    found = released_network(sd)
    if found != network:
        raise CheckpointError(f"{source}: holds Wav2Lip's {FILES[found]}, expected {FILES[network]}")
    return load_into(module, rename(sd, network), source, problem=f"does not fit Wav2Lip's {FILES[network]}")
