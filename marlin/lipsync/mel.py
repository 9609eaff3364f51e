"""Wav2Lip's mel spectrogram (numpy): 16 kHz, n_fft 800, hop 200, window 800, 80 Slaney mels 55-7600 Hz,
pre-emphasis 0.97, dB with ref 20 and floor -100, symmetric normalisation to [-4, 4]. 80 mel steps per second."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class MelParams:
    sample_rate: int = 16000
    n_fft: int = 800
    hop: int = 200
    win: int = 800
    n_mels: int = 80
    fmin: float = 55.0
    fmax: float = 7600.0
    preemphasis: float = 0.97
    ref_level_db: float = 20.0
    min_level_db: float = -100.0
    max_abs_value: float = 4.0

    @property
    def steps_per_second(self) -> float:
        return self.sample_rate / self.hop


WAV2LIP = MelParams()


def _hz_to_mel(f):
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    logstep = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / logstep, lin)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    logstep = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(logstep * (m - 15.0)), m * (200.0 / 3))


@lru_cache(maxsize=4)
def mel_filterbank(p: MelParams = WAV2LIP) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) triangular filters with Slaney area normalisation."""
    freqs = np.linspace(0, p.sample_rate / 2, 1 + p.n_fft // 2)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(p.fmin), _hz_to_mel(p.fmax), p.n_mels + 2))
    fdiff = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def stft_magnitude(y: np.ndarray, p: MelParams = WAV2LIP) -> np.ndarray:
    """|STFT| with a periodic Hann window, centred frames (reflect padding): (n_fft//2+1, 1 + len(y)//hop)."""
    pad = p.n_fft // 2
    if len(y) <= pad:
        y = np.pad(y, (0, pad + 1 - len(y)))
    y = np.pad(y, pad, mode="reflect")
    n = 1 + (len(y) - p.n_fft) // p.hop
    frames = np.lib.stride_tricks.as_strided(y, shape=(n, p.n_fft), strides=(y.strides[0] * p.hop, y.strides[0]))
    window = np.zeros(p.n_fft)
    off = (p.n_fft - p.win) // 2
    window[off:off + p.win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(p.win) / p.win)
    return np.abs(np.fft.rfft(frames * window, axis=1)).T


def melspectrogram(wav: np.ndarray, p: MelParams = WAV2LIP) -> np.ndarray:
    """(n_samples,) float audio at p.sample_rate -> (n_mels, 1 + n_samples // hop) float32 in [-4, 4]."""
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    if wav.size == 0:
        raise ValueError("empty audio")
    y = np.concatenate([wav[:1], wav[1:] - p.preemphasis * wav[:-1]])
    mel = mel_filterbank(p) @ stft_magnitude(y, p)
    floor = np.exp(p.min_level_db / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(floor, mel)) - p.ref_level_db
    a = p.max_abs_value
    return np.clip(2 * a * (db - p.min_level_db) / -p.min_level_db - a, -a, a).astype(np.float32)
