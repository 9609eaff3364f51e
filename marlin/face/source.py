"""Frame sources (the decode stage): a video file (PyAV) or a directory of image frames (YTF)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np

from ..video import TruncatedVideoError, VideoError, iter_frames, probe

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class VideoSource:
    """A video file; frames are RGB uint8 (H, W, 3), rotation honoured, in stream order.

    A stream that ends before the frame count its container declares (a file cut short) raises
    :class:`TruncatedVideoError` at its end, unless ``allow_truncated``; ``decoded`` counts the frames of the last
    full pass and ``declared`` is the container's count (0: not recorded)."""

    def __init__(self, path, allow_truncated: bool = False):
        self.path = Path(path)
        info = probe(self.path)  # raises VideoError naming the file
        self.fps, self.declared, self.allow_truncated = info.fps, info.num_frames, allow_truncated
        self.decoded: int | None = None

    @property
    def truncated(self) -> bool:
        return self.decoded is not None and self.decoded < self.declared

    def frames(self) -> Iterator[np.ndarray]:
        n = 0
        for frame in iter_frames(self.path):
            n += 1
            yield frame
        self.decoded = n
        if self.truncated and not self.allow_truncated:
            raise TruncatedVideoError(self.path, n, self.declared)


def natural_key(name: str) -> list:
    """Sort key comparing digit runs as numbers: ``1.2.jpg`` < ``1.10.jpg`` (YouTube Faces names)."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t]


class FrameDirSource:
    """A directory of image files in natural name order (``1.9.jpg`` before ``1.10.jpg``); grayscale
    images become RGB."""

    def __init__(self, path, fps: float = 25.0):
        self.path = Path(path)
        if not self.path.is_dir():
            raise VideoError(self.path, "frame directory does not exist")
        self.files = sorted((f for f in self.path.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS),
                            key=lambda f: natural_key(f.name))
        if not self.files:
            raise VideoError(self.path, "frame directory contains no image files")
        self.fps, self.declared = fps, len(self.files)

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        shape = None
        for f in self.files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)  # (H, W, 3) BGR, grayscale expanded
            if img is None:
                raise VideoError(f, "not a readable image")
            if shape is not None and img.shape != shape:
                raise VideoError(f, f"frame size {img.shape[1]}x{img.shape[0]} differs from {shape[1]}x{shape[0]}")
            shape = img.shape
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def open_source(path, fps: float = 25.0, allow_truncated: bool = False):
    """A directory -> :class:`FrameDirSource`; anything else -> :class:`VideoSource`."""
    return FrameDirSource(path, fps) if Path(path).is_dir() else VideoSource(path, allow_truncated)
