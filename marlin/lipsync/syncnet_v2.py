"""The official SyncNet (syncnet_python's ``S`` model, weights ``syncnet_v2.model``) that published LSE-D /
LSE-C numbers come from, scored as syncnet_python's ``SyncNetInstance.evaluate`` does:
5-frame windows of 224 x 224 BGR faces in 0-255, 20-step MFCC windows (python_speech_features on int16
samples, 4 MFCC steps per frame at 25 fps), offsets compared with the audio features zero-padded by vshift.
Parameter names match the official file, which is loaded weights-only (we cannot ship it)."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .metrics import lse_from_curve
from .mfcc import mfcc


def _bn_relu(conv: nn.Module, n: int, bn=nn.BatchNorm2d) -> list[nn.Module]:
    return [conv, bn(n), nn.ReLU(inplace=True)]


def _fc(out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, out))


class SyncNetV2(nn.Module):
    """faces (N, 3, 5, 224, 224) BGR 0-255 -> (N, 1024); MFCC (N, 1, 13, 20) -> (N, 1024)."""

    window = 5

    def __init__(self, dim: int = 1024):
        super().__init__()
        c2, c3, b3 = nn.Conv2d, nn.Conv3d, nn.BatchNorm3d
        self.netcnnaud = nn.Sequential(
            *_bn_relu(c2(1, 64, 3, padding=1), 64), nn.MaxPool2d(1, 1),
            *_bn_relu(c2(64, 192, 3, padding=1), 192), nn.MaxPool2d(3, stride=(1, 2)),
            *_bn_relu(c2(192, 384, 3, padding=1), 384),
            *_bn_relu(c2(384, 256, 3, padding=1), 256),
            *_bn_relu(c2(256, 256, 3, padding=1), 256), nn.MaxPool2d(3, stride=2),
            *_bn_relu(c2(256, 512, (5, 4)), 512))
        self.netfcaud = _fc(dim)
        self.netfclip = _fc(dim)
        self.netcnnlip = nn.Sequential(
            *_bn_relu(c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), 96, b3), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_bn_relu(c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), 256, b3),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3),
            *_bn_relu(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), 256, b3), nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),
            *_bn_relu(c3(256, 512, (1, 6, 6)), 512, b3))

    def embed_face(self, x: Tensor) -> Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))

    def embed_audio(self, x: Tensor) -> Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    @classmethod
    def from_state_dict(cls, sd: dict, source="<state dict>") -> "SyncNetV2":
        from ..checkpoints import load_into

        return load_into(cls(), sd, source, problem="not syncnet_python's syncnet_v2 weights").eval()


def is_official(sd) -> bool:
    return isinstance(sd, dict) and any(str(k).startswith("netcnnlip.") for k in sd)


def padded_offset_curve(v: np.ndarray, a: np.ndarray, vshift: int = 15) -> np.ndarray:
    """syncnet_python's calc_pdist + mean: audio features zero-padded by vshift; (2 vshift + 1,)."""
    v, a = np.asarray(v, np.float64), np.asarray(a, np.float64)
    ap = np.concatenate([np.zeros((vshift, a.shape[1])), a, np.zeros((vshift, a.shape[1]))])
    win = 2 * vshift + 1
    # torch's pairwise_distance adds eps = 1e-6 to the difference
    d = [np.linalg.norm(v[i] - ap[i:i + win] + 1e-6, axis=1) for i in range(len(v))]
    return np.mean(d, axis=0)


@torch.no_grad()
def official_lse(net: SyncNetV2, faces: np.ndarray, audio: np.ndarray, vshift: int = 15, batch: int = 20) -> dict:
    """faces (N, S, S, 3) RGB uint8 face crops at 25 fps (resized to 224), audio 16 kHz float in [-1, 1]."""
    import cv2

    device = next(net.parameters()).device
    if faces.shape[1:3] != (224, 224):
        faces = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in faces])
    bgr = torch.from_numpy(np.ascontiguousarray(faces[..., ::-1])).float().permute(3, 0, 1, 2)  # (3, N, 224, 224)
    cc = torch.from_numpy(mfcc(np.round(np.clip(audio, -1, 1) * 32767)).T.copy()).float()  # (13, T_a)
    n = min(len(faces), len(audio) // 640) - 5
    if n < 1:
        raise ValueError(f"{len(faces)} frames / {len(audio) / 16000:.2f} s of audio: too short for 5-frame windows")
    vs, as_ = [], []
    for s in range(0, n, batch):
        idx = range(s, min(n, s + batch))
        vs.append(net.embed_face(torch.stack([bgr[:, i:i + 5] for i in idx]).to(device)).cpu())
        as_.append(net.embed_audio(torch.stack([cc[None, :, 4 * i:4 * i + 20] for i in idx]).to(device)).cpu())
    curve = padded_offset_curve(torch.cat(vs).numpy(), torch.cat(as_).numpy(), vshift)
    return {**lse_from_curve(curve, vshift), "curve": curve.tolist()}
