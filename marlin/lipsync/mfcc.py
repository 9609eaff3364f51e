"""MFCCs as python_speech_features 0.6 computes them (the audio input of the official SyncNet, syncnet_v2):
pre-emphasis 0.97, 25 ms rectangular windows every 10 ms (zero-padded tail), |rfft 512|^2 / 512, 26 HTK-mel
filters 0-8000 Hz with integer FFT-bin edges, log, orthonormal DCT-II, 13 coefficients, sinusoidal lifter 22,
c0 replaced by the log frame energy. 100 frames per second."""
from __future__ import annotations

import math

import numpy as np

EPS = np.finfo(float).eps


def _hz2mel(hz):
    return 2595 * np.log10(1 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1)


def filterbank(nfilt: int = 26, nfft: int = 512, sample_rate: int = 16000, low: float = 0.0,
               high: float | None = None) -> np.ndarray:
    """(nfilt, nfft//2 + 1) triangles between integer FFT bins."""
    high = high or sample_rate / 2
    pts = np.linspace(_hz2mel(low), _hz2mel(high), nfilt + 2)
    b = np.floor((nfft + 1) * _mel2hz(pts) / sample_rate)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        up = np.arange(int(b[j]), int(b[j + 1]))
        fb[j, up] = (up - b[j]) / (b[j + 1] - b[j])
        down = np.arange(int(b[j + 1]), int(b[j + 2]))
        fb[j, down] = (b[j + 2] - down) / (b[j + 2] - b[j + 1])
    return fb


def _dct2_ortho(x: np.ndarray) -> np.ndarray:
    """Orthonormal DCT-II along the last axis."""
    n = x.shape[-1]
    k = np.arange(n)[:, None]
    basis = np.cos(np.pi * k * (2 * np.arange(n)[None] + 1) / (2 * n)) * np.sqrt(2.0 / n)
    basis[0] /= np.sqrt(2.0)
    return x @ basis.T


def mfcc(signal: np.ndarray, sample_rate: int = 16000, winlen: float = 0.025, winstep: float = 0.01,
         numcep: int = 13, nfilt: int = 26, nfft: int = 512, preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """(n_samples,) -> (n_frames, numcep). Scale as the official pipeline: int16 sample values, not [-1, 1]."""
    sig = np.asarray(signal, dtype=np.float64).reshape(-1)
    sig = np.append(sig[0], sig[1:] - preemph * sig[:-1])
    flen, fstep = int(math.floor(winlen * sample_rate + 0.5)), int(math.floor(winstep * sample_rate + 0.5))
    n = 1 if len(sig) <= flen else 1 + int(math.ceil((len(sig) - flen) / fstep))
    sig = np.concatenate([sig, np.zeros((n - 1) * fstep + flen - len(sig))])
    idx = np.arange(flen)[None] + fstep * np.arange(n)[:, None]
    pspec = np.abs(np.fft.rfft(sig[idx], nfft)) ** 2 / nfft  # (n, nfft//2 + 1)
    energy = pspec.sum(1)
    energy = np.where(energy == 0, EPS, energy)
    feat = pspec @ filterbank(nfilt, nfft, sample_rate).T
    feat = _dct2_ortho(np.log(np.where(feat == 0, EPS, feat)))[:, :numcep]
    feat *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat[:, 0] = np.log(energy)
    return feat
