"""Static facial expressions as offsets of a few face-shape controls (face-space units, v down).

Controls: ``brow`` raise of the whole brow, ``brow_inner`` extra raise of the inner ends (negative: the
frown of anger), ``brow_pinch`` inner ends pulled together, ``eye`` eye-opening factor, ``corner`` mouth
corners up (negative: down), ``width`` relative change of mouth width, ``open`` resting opening of the
lips, ``upper_lip`` raise of the upper lip, ``asym`` one corner higher than the other, ``wrinkle`` nose
wrinkle lines, ``cheek`` raised cheeks (narrows the lower eyelid).
"""
from __future__ import annotations

NEUTRAL = dict(brow=0.0, brow_inner=0.0, brow_pinch=0.0, eye=1.0, corner=0.0, width=0.0, open=0.0,
               upper_lip=0.0, asym=0.0, wrinkle=0.0, cheek=0.0)

_DELTAS = {
    "neutral": {},
    "happy": dict(corner=0.09, width=0.22, open=0.05, eye=0.8, cheek=1.0),
    "sad": dict(brow_inner=0.1, brow=-0.01, corner=-0.08, width=-0.08, eye=0.8),
    "surprise": dict(brow=0.12, eye=1.45, open=0.2, width=-0.3),
    "fear": dict(brow=0.07, brow_inner=0.06, brow_pinch=0.05, eye=1.35, open=0.07, width=0.2, corner=-0.03),
    "disgust": dict(brow=-0.03, brow_inner=-0.03, upper_lip=0.05, asym=0.05, wrinkle=1.0, eye=0.75),
    "anger": dict(brow=-0.05, brow_inner=-0.08, brow_pinch=0.04, eye=0.7, corner=-0.02, width=-0.1,
                  open=-0.02),
}


def expression_controls(name: str, intensity: float) -> dict:
    """Controls of expression ``name`` at ``intensity`` in (0, 1] (1 = the full expression)."""
    out = dict(NEUTRAL)
    for key, d in _DELTAS[name].items():
        base = NEUTRAL[key]
        out[key] = base + (d - base) * intensity if key == "eye" else base + d * intensity
    return out
