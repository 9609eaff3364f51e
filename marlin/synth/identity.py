"""A person's look: face shape, colours, hair style, accessories. Drawn to show the appearance labels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labels import APPEARANCE

# RGB in [0, 1].
_SKIN = np.array([[0.98, 0.85, 0.75], [0.93, 0.76, 0.63], [0.80, 0.60, 0.45], [0.62, 0.43, 0.30],
                  [0.42, 0.28, 0.19]])
_HAIR = {0: [(0.06, 0.05, 0.05), (0.12, 0.10, 0.09)],                      # black
         1: [(0.93, 0.80, 0.50), (0.85, 0.70, 0.40), (0.96, 0.88, 0.62)],  # blond
         2: [(0.40, 0.24, 0.12), (0.62, 0.22, 0.10), (0.60, 0.58, 0.56), (0.30, 0.18, 0.10)]}  # other
_IRIS = [(0.35, 0.22, 0.12), (0.25, 0.45, 0.70), (0.30, 0.50, 0.30), (0.15, 0.10, 0.08)]


@dataclass
class Identity:
    """Face-space units: the face box spans v in [-1, 1] and u in [-half_width, half_width]."""

    half_width: float
    jaw: float            # 0 round .. 1 narrow chin
    skin: np.ndarray      # (3,) RGB
    hair: np.ndarray
    hair_volume: float
    hairline: float       # v of the hairline at the centre
    long_hair: bool
    bangs: bool
    eye_y: float
    eye_dx: float         # half distance between eye centres
    eye_w: float          # half width of an eye
    eye_h: float          # half height of an open eye
    iris: np.ndarray
    brow_y: float
    brow_thick: float
    brow_colour: np.ndarray
    nose_len: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_u: float
    lip_l: float
    lips: np.ndarray
    lipstick: bool
    glasses: bool
    glasses_colour: np.ndarray
    hat: bool
    hat_colour: np.ndarray
    beard: bool
    shirt: np.ndarray


def _jitter(rng, c, amount=0.04):
    return np.clip(np.asarray(c, float) + rng.normal(0, amount, 3), 0, 1)


def sample_identity(rng: np.random.Generator, appearance: list[int], hair_class: int) -> Identity:
    """Draw a face that shows ``appearance`` (0/1 per :data:`APPEARANCE` name)."""
    a = dict(zip(APPEARANCE, appearance))
    t = rng.uniform(0, len(_SKIN) - 1)
    i = min(int(t), len(_SKIN) - 2)
    skin = _jitter(rng, _SKIN[i] * (1 - (t - i)) + _SKIN[i + 1] * (t - i), 0.02)
    palette = _HAIR[hair_class]
    hair = _jitter(rng, palette[rng.integers(len(palette))], 0.03)
    lips_natural = np.clip(skin * np.array([0.88, 0.7, 0.7]) + rng.normal(0, 0.02, 3), 0, 1)
    lipstick = _jitter(rng, [(0.80, 0.08, 0.15), (0.65, 0.05, 0.30), (0.90, 0.20, 0.25)][rng.integers(3)], 0.03)
    brow = np.clip(hair * 0.7 + 0.03, 0, 1) if hair_class != 1 else np.clip(hair * 0.6, 0, 1)
    return Identity(
        half_width=rng.uniform(0.72, 0.84), jaw=rng.uniform(0.2, 0.8), skin=skin, hair=hair,
        hair_volume=rng.uniform(0.08, 0.2), hairline=rng.uniform(-0.78, -0.62),
        long_hair=bool(a["long_hair"]), bangs=bool(a["bangs"]),
        eye_y=rng.uniform(-0.2, -0.12), eye_dx=rng.uniform(0.3, 0.36), eye_w=rng.uniform(0.13, 0.16),
        eye_h=rng.uniform(0.065, 0.085), iris=_jitter(rng, _IRIS[rng.integers(len(_IRIS))], 0.03),
        brow_y=rng.uniform(-0.42, -0.36), brow_thick=rng.uniform(0.05, 0.09), brow_colour=brow,
        nose_len=rng.uniform(0.32, 0.42), nose_w=rng.uniform(0.12, 0.17),
        mouth_y=rng.uniform(0.45, 0.55), mouth_w=rng.uniform(0.22, 0.3),
        lip_u=rng.uniform(0.04, 0.07), lip_l=rng.uniform(0.05, 0.09),
        lips=lipstick if a["wearing_lipstick"] else lips_natural, lipstick=bool(a["wearing_lipstick"]),
        glasses=bool(a["eyeglasses"]), glasses_colour=_jitter(rng, [(0.05, 0.05, 0.05), (0.5, 0.3, 0.1),
                                                                      (0.7, 0.7, 0.75)][rng.integers(3)]),
        hat=bool(a["wearing_hat"]), hat_colour=rng.uniform(0.05, 0.95, 3),
        beard=bool(a["beard"]), shirt=rng.uniform(0.05, 0.95, 3))


def donor_identity(rng: np.random.Generator, base: Identity) -> Identity:
    """Another person's inner face for a face swap: same accessories and lipstick (the labels stay true),
    clearly different skin and features."""
    other = sample_identity(rng, [0, 0, int(base.long_hair), int(base.bangs), int(base.glasses),
                                  int(base.hat), int(base.beard), int(base.lipstick)], 2)
    shift = rng.choice([-1, 1]) * rng.uniform(0.12, 0.2)
    other.skin = np.clip(base.skin + shift * np.array([1.0, 0.9, 0.8]), 0, 1)
    # the head outline (and the jaw, which drops with the mouth) stays the target's
    other.half_width, other.jaw, other.mouth_y = base.half_width, base.jaw, base.mouth_y
    other.hair, other.hairline = base.hair, base.hairline
    other.hair_volume, other.hat_colour, other.shirt = base.hair_volume, base.hat_colour, base.shirt
    other.glasses_colour = base.glasses_colour
    return other
