"""Random pretraining clips with their masks, over the preprocessed layout or the YouTube Faces layout.

A sample is addressed by its global position p (0, 1, 2, ... over the whole run): p picks the epoch
(p // n), the item (a per-epoch permutation seeded by `seed`) and seeds the clip start and the mask.
So every sample depends only on (seed, p): workers, processes and resumed runs see the same data.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import NoUsableDataError
from ..masking import MaskSpec, feature_pixels, make_masks, token_parts
from ..models.config import MarlinConfig
from .layout import is_item, list_items, load_item
from .ytf import is_ytf, list_ytf

log = logging.getLogger(__name__)


def open_items(data_dir, split: str = "train") -> list:
    """Items of a data directory (YouTube Faces layout by split file, or any preprocessed layout), or of a .txt
    file listing item directories one per line (relative to the file's folder, e.g. `marlin synth`'s train.txt)."""
    data_dir = Path(data_dir)
    if data_dir.suffix == ".txt" and data_dir.is_file():
        names = [ln.strip() for ln in data_dir.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        items = [load_item(data_dir.parent / n) for n in names]
        if not items:
            raise ValueError(f"{data_dir}: lists no items")
        return items
    if is_ytf(data_dir):
        return list_ytf(data_dir, split)
    if (data_dir / f"{split}_set.csv").is_file():  # `marlin preprocess --layout ytf` output with its split files
        return split_items(data_dir, split)
    items = list_items(data_dir)
    if not items:
        raise FileNotFoundError(f"{data_dir}: no preprocessed face items (directories with meta.json) found")
    return items


def split_items(data_dir, split: str) -> list:
    """Preprocessed items named by the official split file `<split>_set.csv` (rows `path,len`)."""
    import csv

    data_dir = Path(data_dir)
    with open(data_dir / f"{split}_set.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    items, missing = [], []
    for r in rows:
        d = data_dir / r["path"]
        (items if is_item(d) else missing).append(d)
    if missing:
        log.warning("%s: %d of %d listed items are missing (e.g. %s)", data_dir / f"{split}_set.csv", len(missing),
                    len(rows), missing[0])
    if not items:
        raise FileNotFoundError(f"{data_dir / f'{split}_set.csv'}: none of the listed items exist")
    return [load_item(d) for d in items]


def sample_clip_indices(total: int, clip_frames: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Official random clip: start uniform in [0, total - L*r], frames start + k*r; a video shorter than the
    span repeats its last frame on that grid."""
    start = int(rng.integers(0, max(total - clip_frames * sample_rate, 0) + 1))
    k = np.minimum(np.arange(clip_frames), (total - 1 - start) // sample_rate)
    return start + k * sample_rate


class PretrainClips(Dataset):
    """position -> {"video": uint8 (3, T, S, S), "mask": bool (N,), "mask_fallback": bool, "position": int}, plus
    "features": bool (T, S, S) with `feature_pixels` (all False for an item without parse maps).

    ``geometry``: the model's clip and token grid (n_frames, img_size, patch_size, tubelet_size; `MarlinConfig`);
    ``mask``: the checked mask setting. "mask_fallback" is True when the strategy needs parse maps (Fasking) and
    the item has none."""

    def __init__(self, items: Sequence, geometry: MarlinConfig, mask: MaskSpec, sample_rate: int = 2, seed: int = 0,
                 cache_mb: float = 0, feature_pixels: bool = False):
        if not items:
            raise ValueError("no items to sample clips from")
        self.items = items if hasattr(items, "__getitem__") else list(items)  # shard samples: read on demand
        self.geometry, self.mask, self.sample_rate, self.seed = geometry, mask, sample_rate, seed
        self.clip_frames, self.img_size = geometry.n_frames, geometry.img_size
        self.patch_size, self.tubelet_size = geometry.patch_size, geometry.tubelet_size
        self.feature_pixels = feature_pixels  # also return each frame's facial-feature pixels (part-weighted loss)
        self._perm_epoch, self._perm = -1, None
        self._bad: set[int] = set()
        self._bits: dict[int, np.ndarray | None] = {}
        self._features: dict[int, np.ndarray | None] = {}  # per item: feature pixels packed 8 to a byte
        # Decoded videos kept in memory (per worker) while they fit in `cache_mb`: on a small dataset seen for many
        # epochs, decoding every clip again costs more than the training step of a tiny model.
        self._videos: dict[int, np.ndarray] = {}
        self._cache_left = int(cache_mb * 2 ** 20)

    def __len__(self) -> int:
        return len(self.items)

    def item_index(self, position: int) -> int:
        epoch, r = divmod(int(position), len(self.items))
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.items))
            self._perm_epoch = epoch
        return int(self._perm[r])

    def _resize(self, frames: np.ndarray, parse: np.ndarray | None):
        import cv2

        s = self.img_size
        if frames.shape[1:3] != (s, s):
            frames = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in frames])
        if parse is not None and parse.shape[1:3] != (s, s):  # nearest neighbour keeps the labels
            parse = np.stack([cv2.resize(p, (s, s), interpolation=cv2.INTER_NEAREST) for p in parse])
        return frames, parse

    def read_clip(self, index: int, rng: np.random.Generator):
        """A random clip of item `index`: (frame indices (T,), frames (T, S, S, 3) uint8 at img_size)."""
        item = self.items[index]
        idx = sample_clip_indices(item.num_frames, self.clip_frames, self.sample_rate, rng)
        video = self._cached_video(index)
        if video is not None:
            return idx, video[np.minimum(idx, len(video) - 1)]
        frames, _ = self._resize(_read_frames(item, idx, self.sample_rate), None)
        if len(frames) != self.clip_frames:
            raise ValueError(f"decoded {len(frames)} of {self.clip_frames} frames")
        return idx, frames

    def _cached_video(self, index: int) -> np.ndarray | None:
        """All frames (F, S, S, 3) of item `index` from the cache, decoding them once while the budget lasts."""
        if index in self._videos:
            return self._videos[index]
        item = self.items[index]
        need = item.num_frames * self.img_size * self.img_size * 3
        if need > self._cache_left:
            return None
        frames, _ = self._resize(_read_frames(item, np.arange(item.num_frames), 1), None)
        self._videos[index] = frames
        self._cache_left -= frames.nbytes
        return frames

    def _parse(self, index: int) -> np.ndarray | None:
        """All parse maps (F, S, S) of item `index` at img_size, None (reported once) when it has none."""
        parse = self.items[index].read_parse(None)
        if parse is None:
            if index not in self._bits and index not in self._features:
                log.warning("%s: no parse maps, falling back to random masking and an unweighted loss for this item",
                            _where(self.items[index]))
            return None
        return self._resize(np.zeros((0, self.img_size, self.img_size, 3), np.uint8), parse)[1]

    def part_bits(self, index: int) -> np.ndarray | None:
        """Fasking groups present in every frame's patches, as bits: (T, S/p, S/p) uint8, computed once per item
        (reading the whole compressed parse map for every clip would cost more than decoding the clip)."""
        if index not in self._bits:
            parse = self._parse(index)
            if parse is None:
                self._bits[index] = None
            else:
                parts = token_parts(parse, self.patch_size, self.mask.strategy.membership)  # (7, T, S/p, S/p)
                shifts = np.arange(7, dtype=np.uint8)[:, None, None, None]
                self._bits[index] = (parts.astype(np.uint8) << shifts).sum(0, dtype=np.uint8)
        return self._bits[index]

    def clip_groups(self, index: int, idx: np.ndarray) -> np.ndarray | None:
        """Group membership (7, T', S/p, S/p) bool of each tubelet's first frame of clip `idx`, or None."""
        bits = self.part_bits(index)
        if bits is None:
            return None
        sel = bits[np.minimum(idx[::self.tubelet_size], len(bits) - 1)]  # (T', S/p, S/p)
        return (sel[None] >> np.arange(7, dtype=np.uint8)[:, None, None, None]) & 1 == 1

    def clip_features(self, index: int, idx: np.ndarray) -> np.ndarray:
        """Facial-feature pixels (T, S, S) bool of clip frames `idx` (all False without parse maps). Kept per item,
        one bit a pixel, while the cache budget lasts."""
        packed = self._features.get(index)
        if index not in self._features:
            parse = self._parse(index)
            packed = None if parse is None else np.packbits(feature_pixels(parse), axis=-1)
            if packed is None or packed.nbytes <= self._cache_left:
                self._features[index] = packed
                self._cache_left -= 0 if packed is None else packed.nbytes
        if packed is None:
            return np.zeros((len(idx), self.img_size, self.img_size), bool)
        sel = packed[np.minimum(idx, len(packed) - 1)]
        return np.unpackbits(sel, axis=-1, count=self.img_size).astype(bool)

    def load(self, index: int, rng: np.random.Generator):
        """(frames (T, S, S, 3) uint8, group membership of each tubelet's first frame (7, T', S/p, S/p) bool or None
        when the strategy needs none or the item has no parse maps, facial-feature pixels (T, S, S) bool or None
        when not asked for)."""
        idx, frames = self.read_clip(index, rng)
        groups = self.clip_groups(index, idx) if self.mask.strategy.needs_parts else None
        features = self.clip_features(index, idx) if self.feature_pixels else None
        return frames, groups, features

    def __getitem__(self, position: int) -> dict:
        return self.sample(self.item_index(position), position)

    def sample(self, index: int, position: int) -> dict:
        """The sample of item ``index`` at global ``position`` (which seeds its clip start and mask); an unreadable
        item is reported once and the next readable one taken."""
        rng = np.random.default_rng([self.seed, int(position)])
        for _ in range(len(self.items)):
            if index not in self._bad:
                try:
                    frames, parts, features = self.load(index, rng)
                    break
                except Exception as e:  # a bad input is reported once and skipped
                    self._bad.add(index)
                    log.warning("%s: skipped, cannot read a clip (%s: %s)", _where(self.items[index]),
                                type(e).__name__, e)
            index = (index + 1) % len(self.items)
        else:
            raise NoUsableDataError("no readable item left in the dataset (each was reported when skipped)")
        g = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        mask = make_masks(self.mask, 1, self.geometry.grid, [parts], g)[0]
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, S, S) uint8
        out = {"video": video, "mask": mask, "position": int(position),
               "mask_fallback": self.mask.strategy.needs_parts and parts is None}
        if features is not None:
            out["features"] = torch.from_numpy(features)
        return out


def _read_frames(item, idx: np.ndarray, step: int) -> np.ndarray:
    """Frames `idx` (start + k*step, clamped) of an item: videos are decoded up to the last one, converting
    only the selected frames to RGB; frame folders read just those files."""
    video = item.video_source() if hasattr(item, "video_source") else getattr(item, "video_path", None)
    if video is None or (isinstance(video, Path) and not video.is_file()):
        return item.read_frames(idx)
    from itertools import islice

    from ..video import iter_frames

    n = len(np.unique(idx))  # distinct frames (a short video repeats its last one)
    frames = list(islice(iter_frames(video, int(idx[0]), step), n))
    if not frames:
        raise ValueError(f"{video}: no frame at index {int(idx[0])}")
    return np.stack(frames + [frames[-1]] * (len(idx) - len(frames)))


def _where(item) -> str:
    return str(getattr(item, "root", "")) + ("/" + item.path if hasattr(item, "path") else "")


class PositionSampler(Sampler):
    """Infinite global positions for one rank: micro-batch k of rank r holds k*B*W + r*B + [0, B).

    `start` is the number of micro-batches already consumed (resume).
    """

    def __init__(self, batch_size: int, rank: int = 0, world: int = 1, start: int = 0, limit: int | None = None):
        self.batch_size, self.rank, self.world, self.start, self.limit = batch_size, rank, world, start, limit

    def __iter__(self):
        k = self.start
        while self.limit is None or k < self.limit:
            base = k * self.batch_size * self.world + self.rank * self.batch_size
            yield from range(base, base + self.batch_size)
            k += 1

    def __len__(self) -> int:
        if self.limit is None:
            raise TypeError("infinite sampler")
        return (self.limit - self.start) * self.batch_size


def collate(samples: list[dict]) -> dict:
    out = {"video": torch.stack([s["video"] for s in samples]), "mask": torch.stack([s["mask"] for s in samples]),
           "mask_fallback": torch.tensor([s["mask_fallback"] for s in samples]),
           "position": torch.tensor([s["position"] for s in samples])}
    if all("features" in s for s in samples):
        out["features"] = torch.stack([s["features"] for s in samples])
    return out
