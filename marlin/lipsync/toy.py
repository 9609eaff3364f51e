"""Generated talking clips for tests and demos: a drawn face whose mouth opening follows an envelope, and
audio made of tone bursts with the same envelope, so sound and mouth opening are aligned frame by frame."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .align import FPS
from .audio import SAMPLE_RATE, write_video_with_audio


def openness(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) mouth opening in [0, 1]: syllables of 2-6 frames separated by 1-6 frames of silence."""
    out = np.zeros(n_frames, dtype=np.float32)
    t = int(rng.integers(0, 4))
    while t < n_frames:
        n = int(rng.integers(2, 7))
        out[t:t + n] = rng.uniform(0.5, 1.0)
        t += n + int(rng.integers(1, 7))
    return out


def draw_faces(env: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) envelope -> (T, size, size, 3) uint8 frames of one face (random colours, slight jitter)."""
    import cv2

    bg = rng.integers(0, 255, 3)
    skin = rng.integers(120, 230, 3)
    cx, cy = size / 2 + rng.uniform(-1, 1) * size / 16, size / 2 + rng.uniform(-1, 1) * size / 16
    frames = np.empty((len(env), size, size, 3), np.uint8)
    s = size / 32.0
    for i, o in enumerate(env):
        f = np.empty((size, size, 3), np.uint8)
        f[:] = bg
        jx, jy = rng.normal(0, 0.3 * s, 2)
        c = (int(cx + jx), int(cy + jy))
        cv2.ellipse(f, c, (int(12 * s), int(15 * s)), 0, 0, 360, tuple(int(v) for v in skin), -1)
        for ex in (-5, 5):
            cv2.circle(f, (int(c[0] + ex * s), int(c[1] - 5 * s)), max(1, int(1.5 * s)), (20, 20, 20), -1)
        mouth_h = max(1, int(round((0.5 + 5.5 * o) * s)))
        cv2.ellipse(f, (c[0], int(c[1] + 7 * s)), (int(5 * s), mouth_h), 0, 0, 360, (90, 10, 10), -1)
        frames[i] = f
    return frames


def tone_audio(env: np.ndarray, fps: float = FPS, sample_rate: int = SAMPLE_RATE,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """(T,) envelope -> (T * sample_rate / fps,) float32: a tone per syllable (300-2000 Hz) plus faint noise."""
    rng = rng or np.random.default_rng(0)
    spf = int(round(sample_rate / fps))
    n = len(env) * spf
    amp = np.repeat(env, spf)
    kernel = np.hanning(spf // 2 + 1)
    amp = np.convolve(amp, kernel / kernel.sum(), mode="same")
    freq = np.empty(n)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], (env > 0).astype(int)])) == 1)
    cur = rng.uniform(300, 2000)
    starts = set((edges * spf).tolist())
    for k in range(0, n, spf):
        if k in starts:
            cur = rng.uniform(300, 2000)
        freq[k:k + spf] = cur
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    return (0.6 * amp * np.sin(phase) + 0.003 * rng.standard_normal(n)).astype(np.float32)


def talking_clip(n_frames: int = 50, size: int = 32, seed: int = 0, fps: float = FPS):
    """(frames (T, S, S, 3) uint8, audio (T * 640,) float32 at 16 kHz, envelope (T,))."""
    rng = np.random.default_rng(seed)
    env = openness(n_frames, rng)
    return draw_faces(env, size, rng), tone_audio(env, fps, rng=rng), env


def write_toy_lrs2(root, speakers: int = 2, per_speaker: int = 3, n_frames: int = 50, size: int = 32,
                   seed: int = 0) -> list[str]:
    """An LRS2-layout dataset: ``root/main/<speaker>/<id>.mp4`` (with audio) and train/val/test.txt lists."""
    root = Path(root)
    names = []
    for s in range(speakers):
        for k in range(per_speaker):
            name = f"{1000 + s}/{k + 1:05d}"
            frames, audio, _ = talking_clip(n_frames, size, seed=seed * 1000 + s * 100 + k)
            write_video_with_audio(root / "main" / f"{name}.mp4", frames, audio)
            names.append(name)
    n = len(names)
    splits = {"train": names[: max(1, n - 2)], "val": names[max(1, n - 2): n - 1] or names[:1], "test": names[n - 1:]}
    for split, lst in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{x}\n" for x in lst))
    return names
