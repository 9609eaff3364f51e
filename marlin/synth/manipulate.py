"""Manipulations (the "fake" half of the world): what replaces which region, in which frames.

- ``swap``: the inner face (brows, eyes, nose, mouth) comes from another person, slightly blurred,
  pasted with a hard seam in every frame;
- ``flicker``: the same swap, but present in only some frames and at a varying strength (temporal flicker);
- ``mouth``: the mouth region comes from the same person speaking differently (lips out of step with
  the jaw), blurred and with a brightness seam.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .identity import Identity, donor_identity


@dataclass
class Manipulation:
    kind: str
    donor: Identity
    alpha: np.ndarray        # (T,) blend strength of the pasted region per frame
    speech: np.ndarray | None  # (T,) the donor's lip opening ("mouth" only; None: the target's)
    blur: float              # Gaussian sigma of the pasted region, fraction of the image side
    gain: float              # brightness factor of the pasted region


def sample_manipulation(rng: np.random.Generator, kind: str, idn: Identity, frames: int, fps: float) -> Manipulation:
    T = frames
    alpha = np.ones(T)
    speech = None
    donor = idn
    gain = 1.0
    if kind in ("swap", "flicker"):
        donor = donor_identity(rng, idn)
    if kind == "flicker":
        on = rng.permutation(T) < max(2, T // 2)
        alpha = np.where(on, rng.uniform(0.7, 1.0, T), rng.uniform(0.0, 0.2, T))
    if kind == "mouth":
        sec = np.arange(T) / fps
        freq = max(rng.uniform(3.5, 5.5), 2.0 / (T / fps))
        speech = rng.uniform(0.12, 0.2) * (0.5 + 0.5 * np.sin(2 * np.pi * freq * sec + rng.uniform(0, 6))) ** 1.3
        gain = float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.14) + 1)
    return Manipulation(kind, donor, alpha, speech, float(rng.uniform(0.004, 0.008)), gain)
