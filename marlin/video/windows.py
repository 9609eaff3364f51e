"""Clip sampling for feature extraction, with the official MARLIN window semantics.

For a video of `total` frames, clip length L (16) and sample rate r (2):
- total <= L: one clip of all frames, padded by repeating the last frame;
- L < total <= L*r: one clip of the first L consecutive frames;
- otherwise: clips of L frames taking every r-th frame, starting at 0, stride*r, 2*stride*r, ...
  while start < total - L*r (the official range; a last partial window is dropped).
`cover_tail=True` adds one more window ending at the last frame when the tail would be left out.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def clip_indices(total: int, clip_frames: int = 16, sample_rate: int = 2, stride: int = 16,
                 cover_tail: bool = False) -> list[list[int]]:
    """Frame indices of every clip, in order."""
    if total <= 0:
        return []
    if total <= clip_frames:
        return [list(range(total)) + [total - 1] * (clip_frames - total)]
    span = clip_frames * sample_rate
    if total <= span:
        return [list(range(clip_frames))]
    starts = list(range(0, total - span, stride * sample_rate))
    if cover_tail and starts[-1] + span < total:
        starts.append(total - span)
    return [[s + k * sample_rate for k in range(clip_frames)] for s in starts]


def iter_clips(frames: Iterable[np.ndarray], clips: list[list[int]]) -> Iterator[np.ndarray]:
    """Stream (L, H, W, 3) clips out of a frame iterator, keeping only frames a pending clip still needs.

    Memory is bounded by the frames spanned by overlapping clips, never the whole video. A clip whose
    frames run past the end of the stream is dropped (as the official reader does).
    """
    if not clips:
        return
    needed: dict[int, int] = {}  # frame index -> number of clips still needing it
    for c in clips:
        for i in set(c):
            needed[i] = needed.get(i, 0) + 1
    last_needed = max(needed)
    buffer: dict[int, np.ndarray] = {}
    next_clip = 0
    for index, frame in enumerate(frames):
        if index in needed:
            buffer[index] = frame
        while next_clip < len(clips) and max(clips[next_clip]) <= index:
            clip = clips[next_clip]
            yield np.stack([buffer[i] for i in clip])
            for i in set(clip):
                needed[i] -= 1
                if needed[i] == 0:
                    buffer.pop(i, None)
            next_clip += 1
        if index >= last_needed:
            break
