"""The YouTube Faces layout of the official pretraining code.

    ROOT/train_set.csv, ROOT/val_set.csv          "path,len" rows, path = <person>/<video index>
    ROOT/crop_images_DB/<path>/*.jpg              224x224 face crops, one per frame
    ROOT/face_parsing_images_DB/<path>/<frame>.npy  (1, S, S) LaPa-11 parse of that frame ((0, ...) = no face)
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

CROPS = "crop_images_DB"
PARSES = "face_parsing_images_DB"


def is_ytf(root) -> bool:
    root = Path(root)
    return (root / CROPS).is_dir() and any((root / f"{s}_set.csv").is_file() for s in ("train", "val"))


@dataclass
class YtfItem:
    """One YouTube Faces video (a directory of JPEG crops), read like a `marlin.data.layout.FaceItem`."""

    root: Path
    path: str
    _files: list = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path

    @property
    def frames_dir(self) -> Path:
        return self.root / CROPS / self.path

    def files(self) -> list[Path]:
        if self._files is None:
            self._files = sorted(self.frames_dir.glob("*.jpg"))
            if not self._files:
                raise FileNotFoundError(f"{self.frames_dir}: no .jpg frames")
        return self._files

    @property
    def num_frames(self) -> int:
        return len(self.files())

    def read_frames(self, indices: Sequence[int]) -> np.ndarray:
        """(T, S, S, 3) uint8 RGB of the given frame indices."""
        import cv2

        files = self.files()
        out = []
        for i in indices:
            f = files[min(int(i), len(files) - 1)]
            img = cv2.imread(str(f))
            if img is None:
                raise ValueError(f"{f}: not a readable image")
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        return np.stack(out)

    def has_parse(self) -> bool:
        return (self.root / PARSES / self.path).is_dir()

    def read_parse(self, indices: Sequence[int] | None = None) -> np.ndarray | None:
        """(T, S, S) uint8 parse maps (all frames when `indices` is None); an empty parse (no face) reads as
        background."""
        if not self.has_parse():
            return None
        files = self.files()
        if indices is None:
            indices = range(len(files))
        out = []
        for i in indices:
            f = self.root / PARSES / self.path / (files[min(int(i), len(files) - 1)].stem + ".npy")
            p = np.load(f)
            if p.ndim == 3:
                p = p[0] if p.shape[0] > 0 else None
            if p is None:
                import cv2

                h = cv2.imread(str(files[0])).shape[0]
                p = np.zeros((h, h), np.uint8)
            out.append(p.astype(np.uint8))
        return np.stack(out)


def list_ytf(root, split: str = "train") -> list[YtfItem]:
    """Items of the official split file `ROOT/<split>_set.csv`."""
    root = Path(root)
    csv_path = root / f"{split}_set.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: YouTube Faces split file not found")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "path" not in rows[0]:
        raise ValueError(f"{csv_path}: expected a 'path,len' header")
    return [YtfItem(root, r["path"]) for r in rows]
