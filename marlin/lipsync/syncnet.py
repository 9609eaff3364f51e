"""SyncNet expert (Wav2Lip's colour SyncNet, any window length): lower-half face window and mel window ->
unit embeddings; P(in sync) = cosine similarity of the ReLU'd embeddings; trained with BCE.
``arch="wav2lip"`` builds Wav2Lip's own SyncNet_color (the layers of `marlin.lipsync.wav2lip`), whose released
weights (lipsync_expert.pth) load."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .align import mel_steps
from .blocks import ConvBlock, down_stack


@dataclass(frozen=True)
class SyncNetConfig:
    window: int = field(default=5, metadata={"help": "frames per window: 5 (Wav2Lip) or 16 (MARLIN)"})
    face_size: int = field(default=96, metadata={"help": "faces are resized to this size; SyncNet sees the lower half"})
    width: int = field(default=32, metadata={"help": "channels of the first stage, doubled per stage up to 512"})
    stages: int = field(default=5, metadata={"help": "downsampling stages"})
    embed_dim: int = field(default=512, metadata={"help": "embedding size"})
    arch: str = field(default="ours", metadata={
        "help": "ours (sizes above) or wav2lip (Wav2Lip's SyncNet_color: 5 frames, 96 px, 512-d; its released "
                "lipsync_expert.pth loads)"})

    @property
    def mel_steps(self) -> int:
        return mel_steps(self.window)

    def to_dict(self) -> dict:
        return asdict(self)


class SyncNet(nn.Module):
    """face (B, T, 3, S/2, S) in [0, 1], mel (B, 1, 80, mel_steps(T)) -> embeddings (B, E), (B, E)."""

    def __init__(self, cfg: SyncNetConfig = SyncNetConfig()):
        super().__init__()
        self.config = cfg
        if cfg.arch == "wav2lip":
            from . import wav2lip

            if (cfg.window, cfg.face_size, cfg.embed_dim) != (wav2lip.WINDOW, wav2lip.FACE_SIZE, 512):
                raise ValueError(f"Wav2Lip's SyncNet sees {wav2lip.WINDOW}-frame windows of {wav2lip.FACE_SIZE} px "
                                 f"faces with 512-d embeddings, got window {cfg.window}, face size {cfg.face_size}, "
                                 f"embed_dim {cfg.embed_dim}")
            self.face, self.audio = wav2lip.syncnet_stacks()
            return
        if cfg.arch != "ours":
            raise ValueError(f"unknown SyncNet arch {cfg.arch!r}; choose ours or wav2lip")
        widths = [min(cfg.width * 2 ** i, 512) for i in range(cfg.stages)]
        self.face = nn.Sequential(ConvBlock(3 * cfg.window, cfg.width, kernel=7), down_stack(cfg.width, widths),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], cfg.embed_dim))
        self.audio = nn.Sequential(ConvBlock(1, cfg.width), down_stack(cfg.width, widths, stride=(2, 1)),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], cfg.embed_dim))

    @property
    def window(self) -> int:
        return self.config.window

    def embed_face(self, faces: Tensor) -> Tensor:
        b, t, c, h, w = faces.shape
        if t != self.window or c != 3:
            raise ValueError(f"SyncNet expects faces (B, {self.window}, 3, H, W), got {tuple(faces.shape)}")
        if self.config.arch == "wav2lip":
            faces = faces.flip(2)  # Wav2Lip's networks were trained on BGR frames
        return F.normalize(F.relu(self.face(faces.reshape(b, t * c, h, w))), dim=1)

    def embed_audio(self, mel: Tensor) -> Tensor:
        return F.normalize(F.relu(self.audio(mel)), dim=1)

    def forward(self, faces: Tensor, mel: Tensor) -> tuple[Tensor, Tensor]:
        return self.embed_face(faces), self.embed_audio(mel)


def sync_probability(v: Tensor, a: Tensor) -> Tensor:
    """Cosine similarity of unit non-negative embeddings, in [0, 1]: (B,)."""
    return (v * a).sum(1).clamp(1e-7, 1 - 1e-7)


def sync_loss(v: Tensor, a: Tensor, label: Tensor) -> Tensor:
    """Wav2Lip's cosine BCE."""
    return F.binary_cross_entropy(sync_probability(v, a), label)


def expert_loss(syncnet: SyncNet, lower_faces: Tensor, sync_mels: Tensor) -> Tensor:
    """Sync loss of generated lower halves against their audio (frozen expert, label 1).

    lower_faces (B, T, 3, S/2, S) with T = k * window; sync_mels (B, k, 1, 80, m)."""
    b, t = lower_faces.shape[:2]
    w = syncnet.window
    faces = lower_faces.reshape(b * (t // w), w, *lower_faces.shape[2:])
    mels = sync_mels.reshape(b * (t // w), *sync_mels.shape[2:])
    v, a = syncnet(faces, mels)
    return sync_loss(v, a, torch.ones(len(v), device=v.device))
