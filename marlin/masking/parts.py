"""Facial part groups of Fasking and the per-token part membership computed from LaPa parse maps."""
from __future__ import annotations

import numpy as np

# LaPa-11 ids per group, in the order of the official `YoutubeFace.seg_groups`.
PART_GROUPS: tuple[tuple[int, ...], ...] = (
    (2, 4),      # eye + brow (one side)
    (3, 5),      # eye + brow (other side)
    (6,),        # nose
    (7, 8, 9),   # mouth: upper lip, inner mouth, lower lip
    (10,),       # hair
    (1,),        # skin
    (0,),        # background
)
GROUP_NAMES = ("eye_a", "eye_b", "nose", "mouth", "hair", "skin", "background")
N_FACE_PARTS = 5  # the first five groups are the facial parts; then skin, then background
SKIN, BACKGROUND = 5, 6
FEATURE_LABELS = (2, 3, 4, 5, 6, 7, 8, 9)  # brows, eyes, nose, lips and inner mouth: where expressions show


def feature_pixels(parse: np.ndarray) -> np.ndarray:
    """Facial-feature pixels (brows, eyes, nose, lips, inner mouth) of LaPa-11 parse maps: same shape, bool."""
    return (parse >= FEATURE_LABELS[0]) & (parse <= FEATURE_LABELS[-1])


MEMBERSHIPS = ("any", "most")


def token_parts(parse: np.ndarray, patch_size: int, membership: str = "any") -> np.ndarray:
    """Group membership of every patch: (T', S, S) uint8 parse of each tubelet's first frame -> (7, T', S/p, S/p) bool.

    ``membership`` "any" (the official rule): a patch belongs to every group one of whose labels any of its
    pixels carries, so a boundary patch is in several groups. "most" (`fasking_inner`): a patch belongs to the
    one group that holds the most of its pixels (the earlier group of `PART_GROUPS` on a tie). The maps are at
    the model's img_size, a multiple of the patch size (checked by `MarlinConfig`).
    """
    if membership not in MEMBERSHIPS:
        raise ValueError(f"membership must be one of {', '.join(MEMBERSHIPS)}, got {membership!r}")
    t, h, w = parse.shape
    blocks = parse.reshape(t, h // patch_size, patch_size, w // patch_size, patch_size)
    counts = np.zeros((11, t, h // patch_size, w // patch_size), dtype=np.int32)
    for c in range(11):
        counts[c] = (blocks == c).sum(axis=(2, 4))
    if membership == "any":
        return np.stack([counts[list(ids)].any(axis=0) for ids in PART_GROUPS])
    per_group = np.stack([counts[list(ids)].sum(axis=0) for ids in PART_GROUPS])  # (7, T', H', W') pixels
    return per_group.argmax(axis=0)[None] == np.arange(len(PART_GROUPS))[:, None, None, None]
