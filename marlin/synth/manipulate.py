"""Manipulations (the "fake" half of the world): what replaces which region, in which frames.

- ``swap``: the inner face (brows, eyes, nose, mouth) comes from another person, slightly blurred,
  pasted with a hard seam in every frame;
- ``flicker``: the same swap, but present in only some frames and at a varying strength (temporal flicker);
- ``mouth``: the mouth region comes from another person's mouth moving a few frames earlier or later
  than the jaw (a lip-sync fake), blurred and with a brightness seam.
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
    blur: float              # Gaussian sigma of the pasted region, fraction of the face height
    gain: float              # brightness factor of the pasted region


def sample_manipulation(rng: np.random.Generator, kind: str, idn: Identity, own_speech: np.ndarray) -> Manipulation:
    """``own_speech``: (T,) the target's lip opening from speech (the "mouth" kind plays it out of step)."""
    T = len(own_speech)
    alpha = np.ones(T)
    speech = None
    gain = 1.0
    donor = donor_identity(rng, idn)
    if kind == "flicker":
        on = rng.permutation(T) < max(2, T // 2)
        alpha = np.where(on, rng.uniform(0.7, 1.0, T), rng.uniform(0.0, 0.2, T))
    if kind == "mouth":
        speech = np.roll(own_speech, int(rng.integers(3, 7)) * int(rng.choice([-1, 1])))
        gain = float(rng.choice([-1, 1]) * rng.uniform(0.1, 0.16) + 1)
    return Manipulation(kind, donor, alpha, speech, float(rng.uniform(0.005, 0.01)), gain)
