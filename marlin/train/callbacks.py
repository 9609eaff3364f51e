"""Run control for pretraining: step / wall-clock budgets, resumable checkpoints, a progress bar with a total."""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import TQDMProgressBar


def save_run_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """Atomic, fsynced Lightning checkpoint (weights, critic, both optimisers and schedulers, loops, iteration,
    RNG): a crash or a shared file system's late write-back never leaves a half-written last.ckpt."""
    from ..atomic import atomic_path, temp_name

    # every rank calls save_checkpoint (FSDP2 gathers the shards); global rank 0 writes the file
    writer = atomic_path(path, fsync=True) if trainer.is_global_zero else contextlib.nullcontext(temp_name(path))
    with writer as tmp:
        trainer.save_checkpoint(str(tmp), weights_only=False)  # ends with a barrier
    trainer.strategy.barrier("marlin-checkpoint")


class RunControl(pl.Callback):
    """Stops at `max_steps` iterations or after `max_minutes` (checked every `sync_every` iterations); saves
    `last.ckpt` every `ckpt_every` iterations and at the end."""

    def __init__(self, ckpt_path: Path, accumulate: int, max_steps: int | None, max_minutes: float | None,
                 ckpt_every: int, sync_every: int = 1):
        self.sync_every = max(int(sync_every), 1)
        self.ckpt_path, self.accumulate = Path(ckpt_path), accumulate
        self.max_steps, self.max_minutes, self.ckpt_every = max_steps, max_minutes, ckpt_every
        self.stopped_by = "end of data"
        self._saved_at = -1
        self._t0 = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()
        if self.max_steps is not None and pl_module.iteration >= self.max_steps:
            self.stopped_by = "max_steps"
            trainer.should_stop = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if (batch_idx + 1) % self.accumulate:
            return
        it = pl_module.iteration
        if self.ckpt_every and it % self.ckpt_every == 0:
            save_run_checkpoint(trainer, self.ckpt_path)
            self._saved_at = it
        reason = None
        if self.max_steps is not None and it >= self.max_steps:  # the same iteration on every rank
            reason = "max_steps"
        elif self.max_minutes is not None and it % self.sync_every == 0:
            # the clocks differ between processes: rank 0's decides, in one broadcast every `sync_every`
            # iterations (not every micro-batch: a broadcast waits for the device)
            late = time.perf_counter() - self._t0 >= self.max_minutes * 60
            reason = trainer.strategy.broadcast("max_minutes" if late else None, 0)
        if reason:
            self.stopped_by = reason
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self._saved_at != pl_module.iteration:
            save_run_checkpoint(trainer, self.ckpt_path)
            self._saved_at = pl_module.iteration


class IterationBar(TQDMProgressBar):
    """TQDM bar whose total is the remaining micro-batches when the run has a step budget."""

    def __init__(self, total_batches: int | None):
        super().__init__()
        self._total = total_batches

    @property
    def total_train_batches(self):
        return self._total if self._total is not None else super().total_train_batches
