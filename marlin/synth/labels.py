"""The label vocabulary of the synthetic world and the balanced, seeded draw of one item's labels.

Every label is decided here first; the identity, motion and manipulation of the item are then drawn
to show it (see ``identity.py``, ``motion.py``, ``manipulate.py``).
"""
from __future__ import annotations

import numpy as np

from .rng import item_rng

# Multi-label appearance attributes (names follow CelebV-HQ's appearance mapping where one exists).
APPEARANCE = ("black_hair", "blond_hair", "long_hair", "bangs", "eyeglasses", "wearing_hat", "beard",
              "wearing_lipstick")
# Marginal probability of each appearance attribute (hair colour: black 0.35, blond 0.35, other 0.3).
APPEARANCE_P = (0.35, 0.35, 0.5, 0.4, 0.4, 0.4, 0.4, 0.4)

# Multi-label actions, each present in half of the clips, independently.
ACTION = ("blink", "wink", "talk", "nod", "turn", "glance")
ACTION_P = 0.5

# Multi-class expression (CelebV-HQ emotion names); exactly balanced within every block of 14 items.
EXPRESSION = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")

# Binary: manipulated (1) or real (0), balanced within every block of 14 items; the manipulated half
# is split evenly between three kinds of manipulation.
MANIPULATION = ("none", "swap", "flicker", "mouth")

# Downstream tasks: name -> (kind, class names); the label files are labels/<name>.csv.
TASKS = {"appearance": ("multilabel", APPEARANCE), "action": ("multilabel", ACTION),
         "expression": ("multiclass", EXPRESSION), "manipulated": ("binary", ("real", "manipulated"))}

SPLITS = ("train", "val", "test")
_BLOCK = 14  # 2 x 7 expressions, 7 real + 7 manipulated
_SPLIT_BLOCK = 10  # 8 train, 1 val, 1 test


def _block_perm(seed: int, stream: str, block: int, n: int) -> np.ndarray:
    return item_rng(seed, block, stream).permutation(n)


def sample_labels(seed: int, k: int) -> dict:
    """Labels of item ``k`` (depends only on ``seed`` and ``k``).

    Returns ``{"appearance": [0/1]*8, "action": [0/1]*6, "expression": int, "manipulated": 0/1,
    "manipulation": str}``.
    """
    rng = item_rng(seed, k, "labels")
    hair = rng.choice(3, p=[0.35, 0.35, 0.3])  # 0 black, 1 blond, 2 other colour
    app = [int(hair == 0), int(hair == 1)] + [int(rng.random() < p) for p in APPEARANCE_P[2:]]
    act = [int(rng.random() < ACTION_P) for _ in ACTION]
    block, pos = divmod(k, _BLOCK)
    expression = int(_block_perm(seed, "expression", block, _BLOCK)[pos] % len(EXPRESSION))
    slot = int(_block_perm(seed, "manipulated", block, _BLOCK)[pos])  # 0..13: <7 real
    manipulated = int(slot >= 7)
    kind = "none" if not manipulated else MANIPULATION[1 + (slot - 7 + block) % 3]
    return {"appearance": app, "action": act, "expression": expression, "manipulated": manipulated,
            "manipulation": kind}


def split_of(seed: int, k: int) -> str:
    """Deterministic 80/10/10 split: within every block of 10 items, 8 train, 1 val, 1 test."""
    block, pos = divmod(k, _SPLIT_BLOCK)
    r = int(_block_perm(seed, "split", block, _SPLIT_BLOCK)[pos])
    return "val" if r == 8 else "test" if r == 9 else "train"


def hair_colour_class(appearance: list[int]) -> int:
    """0 black, 1 blond, 2 another colour."""
    return 0 if appearance[0] else 1 if appearance[1] else 2
