"""Wav2Lip generator with a choice of face encoder.

- ``cnn``: Wav2Lip's per-frame CNN encoder and decoder with U-Net skips.
- ``vit``: a MARLIN-architecture ViT trained from scratch; ``marlin``: the same ViT loaded from a MARLIN
  checkpoint. Faces (S px) are resized to the encoder's img_size (224 for the presets); the T-frame clip's tokens
  (B, T/2 * h * w, D) become per-frame maps (B*T, D, h, w) (each tubelet token serves its 2 frames); the masked
  window and the reference window are encoded separately and their maps concatenated, fused with the per-frame
  audio embedding tiled to h x w, and decoded without skips, back to S px.

Every variant draws the lower half; the upper half of the output is the (unmasked) input's.

- ``wav2lip``: Wav2Lip's own network (`marlin.lipsync.wav2lip`), 96 px faces, whose released weights
  (wav2lip.pth, wav2lip_gan.pth) load. As in Wav2Lip, its output is the whole generated face, and each frame's
  16-step mel chunk starts at the frame (Wav2Lip's inference; one frame earlier in training, as Wav2Lip trains).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import UP2, ConvBlock, down_stack, halvings

ENCODERS = ("cnn", "vit", "marlin", "wav2lip")


@dataclass(frozen=True)
class GeneratorConfig:
    encoder: str = field(default="cnn", metadata={
        "help": "face encoder: cnn (Wav2Lip-style CNN, any size), vit (MARLIN architecture from scratch), marlin "
                "(ViT from a MARLIN checkpoint), wav2lip (Wav2Lip's network; its released weights load)"})
    window: int = field(default=5, metadata={"help": "frames per sample (vit/marlin: the encoder's n_frames)"})
    face_size: int = field(default=96, metadata={"help": "faces are resized to this size (LRS2, Wav2Lip: 96)"})
    width: int = field(default=16, metadata={"help": "cnn: channels of the first stage; audio encoder 2x"})
    audio_dim: int = field(default=512, metadata={"help": "audio embedding size (cnn/vit/marlin)"})
    decoder_width: int = field(default=256, metadata={"help": "vit/marlin decoder channels at the token grid"})
    marlin: dict = field(default_factory=dict, metadata={"help": "MarlinConfig fields of the vit/marlin encoder"})

    def to_dict(self) -> dict:
        return asdict(self)

    def chunk_before(self, training: bool) -> int:
        """How many frames before its frame a frame's audio chunk (5 frames) starts: centred (2) for ours;
        Wav2Lip's network as Wav2Lip runs it: 1 in training, 0 at inference."""
        if self.encoder == "wav2lip":
            return 1 if training else 0
        return 2

    def marlin_config(self):
        from ..models import MarlinConfig

        return MarlinConfig.from_dict(self.marlin)


class AudioEncoder(nn.Module):
    """Per-frame mel chunk (N, 1, 80, 16) -> (N, A)."""

    def __init__(self, width: int, dim: int):
        super().__init__()
        widths = [min(width * 2 ** i, 512) for i in range(4)]
        self.net = nn.Sequential(ConvBlock(1, width), down_stack(width, widths, stride=(2, 1)),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], dim), nn.ReLU())

    def forward(self, mel: Tensor) -> Tensor:
        return self.net(mel)


class CNNFaceCodec(nn.Module):
    """Wav2Lip encoder/decoder: per frame (N, 6, S, S) + audio (N, A) -> (N, 3, S, S), with skips."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        s, w = cfg.face_size, cfg.width
        n = halvings(s)
        self.rest = s // 2 ** n  # spatial size left before the bottleneck
        chans = [w] + [min(w * 2 ** (i + 1), 512) for i in range(n)]
        self.down = nn.ModuleList([ConvBlock(6, w, kernel=7)] +
                                  [down_stack(chans[i], [chans[i + 1]]) for i in range(n)])
        self.bottleneck = nn.Sequential(nn.Conv2d(chans[-1], chans[-1], self.rest), nn.ReLU())
        self.up0 = nn.Sequential(nn.ConvTranspose2d(cfg.audio_dim + chans[-1], chans[-1], self.rest),
                                 nn.BatchNorm2d(chans[-1]), nn.ReLU())
        self.up = nn.ModuleList([nn.Sequential(ConvBlock(2 * chans[i + 1], chans[i], **UP2),
                                               ConvBlock(chans[i], chans[i], residual=True))
                                 for i in reversed(range(n))])
        self.out = nn.Sequential(ConvBlock(2 * w, w), nn.Conv2d(w, 3, 1), nn.Sigmoid())

    def forward(self, faces: Tensor, audio: Tensor) -> Tensor:
        skips, x = [], faces
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up0(torch.cat([audio[:, :, None, None], self.bottleneck(x)], 1))  # (N, C, r, r)
        for layer, skip in zip(self.up, reversed(skips[1:])):
            x = layer(torch.cat([x, skip], 1))
        return self.out(torch.cat([x, skips[0]], 1))


class ViTFaceCodec(nn.Module):
    """MARLIN encoder over the T-frame window + skip-free decoder: (B, T, 6, S, S), (B*T, A) -> (B*T, 3, S, S)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        from ..models import MarlinEncoder

        mc = cfg.marlin_config()
        if mc.n_frames != cfg.window:
            raise ValueError(f"the ViT encoder sees {mc.n_frames} frames but the window is {cfg.window}")
        self.encoder = MarlinEncoder(mc)
        self.face_size = cfg.face_size
        d, c = mc.encoder_embed_dim, cfg.decoder_width
        layers, size = [ConvBlock(2 * d + cfg.audio_dim, c), ConvBlock(c, c, residual=True)], mc.grid[1]
        while size < cfg.face_size:  # x2 until at least the face size
            nc = max(c // 2, 16)
            layers += [ConvBlock(c, nc, **UP2), ConvBlock(nc, nc, residual=True)]
            c, size = nc, size * 2
        self.decoder = nn.Sequential(*layers)
        self.out = nn.Sequential(nn.Conv2d(c, 3, 1), nn.Sigmoid())

    def frame_maps(self, clips: Tensor) -> Tensor:
        """(B, T, 3, S, S) -> per-frame token maps (B*T, D, h, w)."""
        mc = self.encoder.config
        b, t = clips.shape[:2]
        x = F.interpolate(clips.flatten(0, 1), size=(mc.img_size, mc.img_size), mode="bilinear", align_corners=False)
        x = x.view(b, t, 3, mc.img_size, mc.img_size).transpose(1, 2)  # (B, 3, T, I, I)
        tokens = self.encoder.extract_features(x, keep_seq=True)  # (B, T/2 * h * w, D)
        tt, h, w = mc.grid
        maps = tokens.view(b, tt, h, w, -1).permute(0, 1, 4, 2, 3)  # (B, T/2, D, h, w)
        return maps.repeat_interleave(mc.tubelet_size, dim=1).flatten(0, 1)  # (B*T, D, h, w)

    def forward(self, faces: Tensor, audio: Tensor) -> Tensor:
        maps = self.frame_maps(torch.cat([faces[:, :, :3], faces[:, :, 3:]], 0))  # masked ++ reference
        maps = torch.cat([maps[: len(maps) // 2], maps[len(maps) // 2:]], 1)  # (B*T, 2D, h, w)
        a = audio[:, :, None, None].expand(-1, -1, *maps.shape[-2:])
        x = self.decoder(torch.cat([maps, a], 1))
        if x.shape[-1] != self.face_size:
            x = F.interpolate(x, size=(self.face_size, self.face_size), mode="bilinear", align_corners=False)
        return self.out(x)


class Generator(nn.Module):
    """inputs (B, T, 6, S, S) (masked ++ reference, [0, 1]), chunks (B, T, 1, 80, 16) -> faces (B, T, 3, S, S)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"unknown face encoder {cfg.encoder!r}; choose one of {ENCODERS}")
        self.config = cfg
        if cfg.encoder == "wav2lip":
            from .wav2lip import FACE_SIZE, Wav2LipAudio, Wav2LipCodec

            if cfg.face_size != FACE_SIZE:
                raise ValueError(f"Wav2Lip's generator draws {FACE_SIZE} px faces, got face_size {cfg.face_size}")
            self.audio, self.face = Wav2LipAudio(), Wav2LipCodec()
            return
        self.audio = AudioEncoder(2 * cfg.width, cfg.audio_dim)
        self.face = CNNFaceCodec(cfg) if cfg.encoder == "cnn" else ViTFaceCodec(cfg)

    @property
    def window(self) -> int:
        return self.config.window

    def forward(self, inputs: Tensor, chunks: Tensor) -> Tensor:
        b, t, c, s, _ = inputs.shape
        if t != self.window or c != 6 or s != self.config.face_size:
            raise ValueError(f"expected inputs (B, {self.window}, 6, {self.config.face_size}, "
                             f"{self.config.face_size}), got {tuple(inputs.shape)}")
        audio = self.audio(chunks.flatten(0, 1))  # (B*T, A)
        if self.config.encoder in ("cnn", "wav2lip"):
            pred = self.face(inputs.flatten(0, 1), audio)
        else:
            pred = self.face(inputs, audio)
        pred = pred.view(b, t, 3, s, s)
        if self.config.encoder == "wav2lip":
            return pred  # Wav2Lip's output is the whole face
        return torch.cat([inputs[:, :, :3, : s // 2], pred[:, :, :, s // 2:]], dim=3)


def load_marlin_encoder(gen: Generator, path, name_or_yaml=None) -> None:
    """Copy the encoder weights of a MARLIN checkpoint (official .pt/.ckpt or ours) into a vit/marlin generator."""
    from ..models import Marlin

    model = Marlin.from_file(name_or_yaml, path, full_model=False)
    if model.config != gen.face.encoder.config:
        raise ValueError(f"{path}: MARLIN config {model.config} does not match the generator's "
                         f"{gen.face.encoder.config}")
    gen.face.encoder.load_state_dict(model.encoder.state_dict())


class Discriminator(nn.Module):
    """Wav2Lip's visual-quality discriminator on lower halves: (N, 3, S/2, S) -> P(real) (N,)."""

    def __init__(self, face_size: int = 96, width: int = 32):
        super().__init__()
        n = max(1, halvings(face_size // 2, 2))
        widths = [min(width * 2 ** (i + 1), 512) for i in range(n)]
        self.net = nn.Sequential(ConvBlock(3, width, kernel=7, leaky=True, norm=False),
                                 down_stack(width, widths, leaky=True, norm=False, residual=0),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(1).clamp(1e-7, 1 - 1e-7)


def make_discriminator(cfg: GeneratorConfig, width: int = 32) -> nn.Module:
    """The visual-quality discriminator for a generator: Wav2Lip's own for ``wav2lip`` (its released
    visual_quality_disc.pth loads), else ours of ``width``."""
    if cfg.encoder == "wav2lip":
        from .wav2lip import Wav2LipDiscriminator

        return Wav2LipDiscriminator()
    return Discriminator(cfg.face_size, width)
