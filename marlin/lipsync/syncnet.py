"""SyncNet expert (Wav2Lip's colour SyncNet, any window length): lower-half face window and mel window ->
unit embeddings; P(in sync) = cosine similarity of the ReLU'd embeddings; trained with BCE."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .align import mel_steps
from .blocks import ConvBlock, down_stack


@dataclass(frozen=True)
class SyncNetConfig:
    window: int = 5  # frames per window (Wav2Lip: 5; MARLIN variant: 16)
    face_size: int = 96  # faces are face_size x face_size; SyncNet sees the lower half
    width: int = 32  # channels of the first stage (Wav2Lip: 32), doubled per stage
    stages: int = 5
    embed_dim: int = 512

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
