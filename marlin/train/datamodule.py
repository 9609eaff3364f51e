"""Lightning data module: deterministic, resumable streams of pretraining clips (see `marlin.data.clips`)."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from ..data.clips import PositionSampler, PretrainClips, collate, open_items
from ..data.shards import ShardClips, ShardSamples, ShardStream, is_shards, open_samples
from ..models.embedding import token_index
from .config import PretrainConfig

log = logging.getLogger(__name__)


class PretrainData(pl.LightningDataModule):
    """Training clips from `data_dir` (YouTube Faces split "train", all preprocessed items, or a train.txt item
    list); validation clips from `val_dir`, the YTF "val" split or a val.txt beside train.txt, else a fixed set of
    clips of the training items."""

    def __init__(self, data_dir, cfg: PretrainConfig, val_dir=None):
        super().__init__()
        self.data_dir, self.val_dir, self.cfg = Path(data_dir), val_dir, cfg
        self.train_items = _open(data_dir, "train", cfg)
        if isinstance(self.train_items, ShardSamples):  # shards: validation on other shards or the same ones
            self.val_items = self.train_items if val_dir is None else _open(val_dir, "val", cfg)
            return
        if val_dir is not None:
            self.val_items = _open(val_dir, "val", cfg)
        elif self.data_dir.is_dir() and (self.data_dir / "val_set.csv").is_file():  # YTF split files
            self.val_items = open_items(self.data_dir, "val")
        elif self.data_dir.name == "train.txt" and (self.data_dir.parent / "val.txt").is_file():
            self.val_items = open_items(self.data_dir.parent / "val.txt")
        else:
            self.val_items = self.train_items
        span = cfg.model.n_frames * cfg.sample_rate
        short = [i for i in self.train_items if hasattr(i, "meta") and i.num_frames < span]
        if short:
            log.warning("%d of %d items have fewer than %d frames (e.g. %s): their clips repeat the last frame",
                        len(short), len(self.train_items), span, short[0].root)

    def _dataset(self, items, seed: int) -> PretrainClips:
        c = self.cfg
        kind = ShardClips if isinstance(items, ShardSamples) else PretrainClips
        return kind(items, c.model, c.mask, c.sample_rate, seed, cache_mb=c.trainer.cache_mb,
                    feature_pixels=c.trainer.part_weight != 1.0)

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def _loader(self, dataset, start: int, limit: int | None) -> DataLoader:
        """This process's loader of ``dataset`` from micro-batch ``start`` (resume), at most ``limit`` batches:
        item folders through a `PositionSampler`; shards as a `ShardStream` of this process's shards (batches
        made in the workers)."""
        tr = self.cfg.trainer
        rank, world = self._rank_world()
        pin = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        common = {"num_workers": tr.num_workers, "pin_memory": pin,
                  "prefetch_factor": 4 if tr.num_workers > 0 else None}
        if isinstance(dataset, ShardClips):
            stream = ShardStream(dataset, tr.batch_size, rank, world, start, limit, tr.shuffle_buffer)
            return DataLoader(stream, batch_size=None, **common)
        sampler = PositionSampler(tr.batch_size, rank, world, start=start, limit=limit)
        return DataLoader(dataset, batch_size=tr.batch_size, sampler=sampler, collate_fn=collate,
                          persistent_workers=tr.num_workers > 0, **common)  # validation: not re-spawned each time

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """The mask's token indices, made on the host before the batch goes to the device: the step selects tokens
        by `gather` and never waits for the device (`marlin.models.embedding.TokenIndex`)."""
        batch["tokens"] = token_index(batch["mask"])
        return batch

    def train_dataloader(self) -> DataLoader:
        done = self.trainer.lightning_module.iteration if self.trainer is not None else 0
        start = done * self.cfg.trainer.accumulate  # micro-batches already consumed (resume)
        return self._loader(self._dataset(self.train_items, self.cfg.trainer.seed), start, None)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._dataset(self.val_items, self.cfg.trainer.seed + 1), 0, self.cfg.trainer.val_batches)


def _open(spec, split: str, cfg: PretrainConfig):
    """Items of a data folder / item list, or the samples of shards (checked against the model geometry)."""
    if is_shards(spec):
        return open_samples(spec, cfg.model.img_size, cfg.model.patch_size)
    return open_items(Path(spec), split)
