"""Splitting a batch job into parts that run on many machines without coordination (`marlin preprocess --part`,
`marlin extract --part`): every input goes to the part a stable hash of its output name picks."""
from __future__ import annotations

import hashlib

from .errors import MarlinError


def part_of(name: str, parts: int) -> int:
    """The part (0 .. parts-1) of the input with relative item name ``name``: a hash of the name, so every
    machine puts every input in the same part whatever order it lists them in."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % parts


def parse_part(text: str) -> tuple[int, int]:
    """"i/n" (0 <= i < n, e.g. ``$SLURM_ARRAY_TASK_ID/8``) -> (i, n); a MarlinError otherwise."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise MarlinError(f"--part {text!r}: expected i/N with integers, e.g. 0/8") from None
    if not (n >= 1 and 0 <= i < n):
        raise MarlinError(f"--part {text!r}: need 0 <= i < N (parts are numbered from 0, like Slurm array ids)")
    return i, n


def part_tag(part: tuple[int, int]) -> str:
    """``part-0003-of-0008``: the tag of a part's own files."""
    return f"part-{part[0]:04d}-of-{part[1]:04d}"
