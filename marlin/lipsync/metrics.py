"""LSE-D and LSE-C (Prajwal et al. 2020, computed as syncnet_python does) with our SyncNet expert.

For every audio offset o in [-vshift, vshift] the curve holds the mean distance between the face-window
embedding at frame i and the audio-window embedding at frame i + o, over the frames where both exist.
LSE-D = min over offsets; LSE-C = median - min; ``av_offset`` = -argmin o (syncnet_python's sign: the official
code reports vshift - argmin over its padded index)."""
from __future__ import annotations

import numpy as np
import torch

from .align import FPS, mel_window
from .data import lower_half, to_tensor


def lse_from_curve(curve, vshift: int | None = None) -> dict:
    """(2 vshift + 1,) mean distances per offset (NaN = no pairs) -> {"lse_d", "lse_c", "av_offset"}."""
    curve = np.asarray(curve, dtype=np.float64)
    if curve.ndim != 1 or curve.size % 2 == 0:
        raise ValueError(f"expected an odd-length 1-D distance curve, got shape {curve.shape}")
    if vshift is None:
        vshift = curve.size // 2
    if np.isnan(curve).all():
        raise ValueError("the distance curve has no finite value (video too short?)")
    k = int(np.nanargmin(curve))
    dmin = float(curve[k])
    return {"lse_d": dmin, "lse_c": float(np.nanmedian(curve)) - dmin, "av_offset": vshift - k}


def offset_curve(v: np.ndarray, a: np.ndarray, vshift: int = 15) -> np.ndarray:
    """v (N, E) face-window and a (M, E) audio-window embeddings (index = first frame) -> (2 vshift + 1,)."""
    v, a = np.asarray(v, np.float64), np.asarray(a, np.float64)
    curve = np.full(2 * vshift + 1, np.nan)
    for k, o in enumerate(range(-vshift, vshift + 1)):
        lo, hi = max(0, -o), min(len(v), len(a) - o)
        if hi > lo:
            curve[k] = np.linalg.norm(v[lo:hi] - a[lo + o:hi + o], axis=1).mean()
    return curve


@torch.no_grad()
def window_embeddings(syncnet, faces: np.ndarray, mel: np.ndarray, fps: float = FPS, batch: int = 64):
    """faces (N, S, S, 3) uint8, mel (80, Tm) -> face and audio embeddings of every window: (N-w+1, E) each."""
    syncnet.eval()
    device = next(syncnet.parameters()).device
    w = syncnet.window
    n = len(faces) - w + 1
    if n < 1:
        raise ValueError(f"{len(faces)} frames is shorter than the SyncNet window ({w})")
    x = lower_half(to_tensor(faces)).to(device)  # (N, 3, S/2, S)
    vs, as_ = [], []
    for s in range(0, n, batch):
        idx = range(s, min(n, s + batch))
        vs.append(syncnet.embed_face(torch.stack([x[i:i + w] for i in idx])))
        mels = np.stack([mel_window(mel, i, w, fps) for i in idx])[:, None]
        as_.append(syncnet.embed_audio(torch.from_numpy(mels).to(device)))
    return torch.cat(vs).cpu().numpy(), torch.cat(as_).cpu().numpy()


def lse(syncnet, faces: np.ndarray, mel: np.ndarray, vshift: int = 15, fps: float = FPS) -> dict:
    """LSE-D, LSE-C and the detected offset of one video, plus its distance curve."""
    v, a = window_embeddings(syncnet, faces, mel, fps)
    curve = offset_curve(v, a, vshift)
    return {**lse_from_curve(curve, vshift), "curve": curve.tolist()}
