"""The masking setting as one typed value: `MaskSpec(strategy, ratio)`, made and checked once where the setting
enters (the pretraining config, `marlin reconstruct`'s flags) and passed inward unchanged.

One rounding rule: a clip keeps ``floor(N (1 - ratio))`` tokens visible (`num_visible`, the official count:
156 of 1568 at 0.9). Tube and frame masking keep whole groups of tokens (a spatial position through every
tubelet, a whole tubelet slice): the fewest groups that hold those tokens (`num_groups`), trimmed at random to
exactly `num_visible` like every other strategy.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from enum import StrEnum


class MaskStrategy(StrEnum):
    """Which tokens stay visible first: Fasking (facial parts masked first), its opposite, VideoMAE's baselines."""

    FASKING = "fasking"
    FASKING_OPP = "fasking_opp"
    FASKING_INNER = "fasking_inner"  # Fasking with a token in the one group holding most of its pixels
    RANDOM = "random"
    TUBE = "tube"
    FRAME = "frame"

    @property
    def needs_parts(self) -> bool:
        """Whether the strategy ranks tokens by facial part (reads the clip's parse maps)."""
        return self in (MaskStrategy.FASKING, MaskStrategy.FASKING_OPP, MaskStrategy.FASKING_INNER)

    @property
    def membership(self) -> str:
        """How a token belongs to a facial-part group (`marlin.masking.token_parts`): "any" (the official rule:
        every group with a pixel in the token) or "most" (only the group holding most of its pixels)."""
        return "most" if self is MaskStrategy.FASKING_INNER else "any"


@dataclass(frozen=True)
class MaskSpec:
    """Mask strategy and ratio (fraction of masked tokens, official ``mask_percentage_target``), checked here once."""

    strategy: MaskStrategy = MaskStrategy.FASKING
    ratio: float = 0.9

    def __post_init__(self):
        try:
            strategy = MaskStrategy(self.strategy)
        except ValueError:
            raise ValueError(f"unknown mask strategy {self.strategy!r}; choose one of "
                             f"{', '.join(MaskStrategy)}") from None
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, numbers.Real) or not 0 <= self.ratio < 1:
            raise ValueError(f"mask ratio must be in [0, 1), got {self.ratio!r}")
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "ratio", float(self.ratio))

    def num_visible(self, num_tokens: int) -> int:
        """Visible tokens of a clip of ``num_tokens``: floor(N (1 - ratio)), as the official code (156 of 1568)."""
        return int(num_tokens * (1 - self.ratio))

    def num_groups(self, num_tokens: int, group_size: int) -> int:
        """The fewest whole groups of ``group_size`` tokens that hold `num_visible` (tube: spatial positions, a
        group being one position through all T' tubelets; frame: tubelet slices of H'W' tokens)."""
        return -(-self.num_visible(num_tokens) // group_size)
