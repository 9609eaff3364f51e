"""Per-frame trajectories (vectorised over the T frames of a clip) that show the action labels.

Every array has shape (T,) unless stated; angles in radians, positions in face-space units.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import ACTION


@dataclass
class Motion:
    open_l: np.ndarray   # eye opening of the image-left eye, 0 closed .. 1 open
    open_r: np.ndarray
    gaze: np.ndarray     # (T, 2) iris offset in [-1, 1] of the free travel
    mouth: np.ndarray    # extra lip opening from speech
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    scale: np.ndarray    # relative head size
    shift: np.ndarray    # (T, 2) head translation in face units
    gain: np.ndarray     # global light gain
    light: np.ndarray    # (T, 2) light gradient across the frame


def _smooth_noise(rng, t: np.ndarray, amp: float, cycles: float) -> np.ndarray:
    """Sum of two random sinusoids: slow nuisance motion."""
    out = np.zeros_like(t)
    for _ in range(2):
        f = rng.uniform(0.3, 1.0) * cycles
        out += amp / 2 * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    return out


def _closure(t_frames: np.ndarray, centre: float, half: float) -> np.ndarray:
    """Eyelid closure 0..1: a smooth bump of half-width ``half`` frames fully closed at ``centre``."""
    x = np.clip(1 - np.abs(t_frames - centre) / half, 0, 1)
    return np.clip(1.6 * x, 0, 1)


def sample_motion(rng: np.random.Generator, actions: list[int], frames: int, fps: float) -> Motion:
    """Draw a clip's motion; each action in ``actions`` (0/1 per :data:`ACTION` name) is clearly shown."""
    a = dict(zip(ACTION, actions))
    T = frames
    f = np.arange(T, dtype=np.float64)
    tau = f / max(T - 1, 1)           # 0..1 over the clip
    sec = f / fps
    dur = T / fps

    open_l = np.ones(T)
    open_r = np.ones(T)
    half = max(2.0, 0.08 * fps)       # ~3-frame half-width at 25 fps
    lo, hi = half, max(half, T - 1 - half)
    blink_at = None
    if a["blink"]:
        c = blink_at = rng.uniform(lo, hi)
        close = _closure(f, c, half)
        if T >= 48 and rng.random() < 0.5:  # long clips may blink twice
            close = np.maximum(close, _closure(f, (c + T / 2) % (T - 2 * half) + half, half))
        open_l, open_r = open_l - close, open_r - close
    if a["wink"]:
        cands = rng.uniform(lo, hi, 32)
        if blink_at is not None:  # keep the wink apart from the blink so it is seen as one eye closing
            cands = cands[np.argsort(-np.minimum(np.abs(cands - blink_at), 2.6 * half), kind="stable")]
        c = cands[0]
        close = _closure(f, c, half * 1.3)
        if rng.random() < 0.5:
            open_l = np.minimum(open_l, 1 - close)
        else:
            open_r = np.minimum(open_r, 1 - close)

    g0 = rng.uniform(-0.2, 0.2, 2)
    gaze = np.tile(g0, (T, 1))
    if a["glance"]:
        target = np.array([rng.choice([-1, 1]) * rng.uniform(0.85, 1.0), rng.uniform(-0.3, 0.3)])
        t0, t1 = sorted(rng.uniform(0.15, 0.85, 2))
        t1 = max(t1, t0 + 0.3)
        w = np.clip((tau - t0) / 0.08, 0, 1) * np.clip((t1 - tau) / 0.08 + 1, 0, 1)  # saccade out, back
        gaze = gaze + w[:, None] * (target - g0)

    mouth = np.zeros(T)
    if a["talk"]:
        freq = max(rng.uniform(3.0, 4.5), 1.6 / dur)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.12, 0.17)
        syll = np.sin(2 * np.pi * freq * sec + phase) * 0.5 + 0.5
        mouth = amp * syll ** 1.5 * (0.7 + 0.3 * np.sin(2 * np.pi * 0.7 * freq * sec + rng.uniform(0, 6)))

    yaw = np.full(T, rng.uniform(-0.12, 0.12)) + _smooth_noise(rng, tau, 0.03, 1)
    if a["turn"]:
        side = rng.choice([-1, 1])
        y0, y1 = -side * rng.uniform(0.0, 0.1), side * rng.uniform(0.35, 0.45)
        mid, width = rng.uniform(0.35, 0.65), rng.uniform(0.08, 0.15)
        yaw = y0 + (y1 - y0) / (1 + np.exp(-(tau - mid) / width)) + _smooth_noise(rng, tau, 0.02, 1)
    pitch = _smooth_noise(rng, tau, 0.04, 1)
    if a["nod"]:
        cycles = rng.uniform(1.0, 1.6)
        pitch = pitch + rng.uniform(0.25, 0.35) * np.sin(2 * np.pi * cycles * tau + rng.uniform(-0.5, 0.5))

    roll = rng.uniform(-0.12, 0.12) + _smooth_noise(rng, tau, 0.06, 1)
    scale = 1 + _smooth_noise(rng, tau, 0.05, 1)
    shift = np.stack([_smooth_noise(rng, tau, 0.15, 1), _smooth_noise(rng, tau, 0.1, 1)], 1)
    gain = rng.uniform(0.8, 1.15) + _smooth_noise(rng, tau, rng.uniform(0, 0.25), 1)
    light = rng.uniform(-0.3, 0.3, 2) + np.stack([_smooth_noise(rng, tau, 0.2, 1) for _ in range(2)], 1)
    return Motion(open_l, open_r, gaze, mouth, yaw, pitch, roll, scale, shift, gain, light)
