"""Seeded random streams: every draw of item ``k`` comes from a generator keyed by (seed, k, stream)."""
from __future__ import annotations

import zlib

import numpy as np


def item_rng(seed: int, k: int, stream: str) -> np.random.Generator:
    """Independent generator for one named stream of one item; depends only on its arguments."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(k), zlib.crc32(stream.encode())])
