"""Token masks for pretraining: Fasking (facial parts masked first) and the VideoMAE baselines."""
from .parts import GROUP_NAMES, PART_GROUPS, feature_pixels, token_parts
from .spec import MaskSpec, MaskStrategy
from .strategies import STRATEGIES, make_masks, mask_from_ranks, token_ranks

__all__ = ["GROUP_NAMES", "PART_GROUPS", "token_parts", "feature_pixels", "MaskSpec", "MaskStrategy", "STRATEGIES",
           "make_masks", "mask_from_ranks", "token_ranks", "save_mask_picture"]


def save_mask_picture(*args, **kwargs):
    """See `marlin.masking.picture.save_mask_picture`."""
    from .picture import save_mask_picture as _save

    return _save(*args, **kwargs)
