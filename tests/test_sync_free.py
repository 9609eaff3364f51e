"""A pretraining iteration that is not a logging step asks the device nothing back: no operation that forces a
CPU-GPU synchronisation or has a data-dependent shape (`aten::nonzero`, boolean indexing, `masked_select`,
`_local_scalar_dense` = `.item()` / `bool(tensor)`), counted with a `TorchDispatchMode` on the CPU around the
real `PretrainModule.training_step` of a `pretrain()` run.

The optimiser's step is left out of the count: its step counters are host tensors on a GPU (AdamW without
`capturable`), so its `.item()` reads never wait for the device."""
import copy
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import TINY_PRETRAIN, make_items
from marlin.train import pretrain
from marlin.train.module import PretrainModule

aten = torch.ops.aten
SYNCING = {aten.nonzero.default: "nonzero", aten.masked_select.default: "masked_select",
           aten._local_scalar_dense.default: "_local_scalar_dense", aten.item.default: "item"}
INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


class SyncCounter(TorchDispatchMode):
    """Counts synchronising / data-dependent-shape operations while not `paused`."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            if func in SYNCING:
                self.ops[SYNCING[func]] += 1
            elif func in INDEXING and any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1]):
                self.ops["boolean indexing"] += 1
        return func(*args, **(kwargs or {}))


def test_the_counter_sees_what_it_counts():
    with SyncCounter() as c:
        x = torch.arange(4.0)
        x[x > 1]
        x.nonzero()
        float(x.sum())
    assert c.ops == {"boolean indexing": 1, "nonzero": 1, "_local_scalar_dense": 1}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_training_iterations_do_not_synchronise_outside_logging_steps(tmp_path, monkeypatch, accumulate):
    counts = {}  # micro-batch -> Counter
    counter = SyncCounter()
    step = PretrainModule.training_step

    def counted_step(self, batch, batch_idx):
        with counter:
            counter.ops = Counter()
            step(self, batch, batch_idx)
        counts[batch_idx] = counter.ops

    opt_step = torch.optim.AdamW.step

    def paused_step(self, *args, **kwargs):
        counter.paused = True
        try:
            return opt_step(self, *args, **kwargs)
        finally:
            counter.paused = False

    monkeypatch.setattr(PretrainModule, "training_step", counted_step)
    monkeypatch.setattr(torch.optim.AdamW, "step", paused_step)
    pretrain(copy.deepcopy(TINY_PRETRAIN), make_items(tmp_path / "data", n=4), tmp_path / "run", max_steps=4,
             log_every=4, accumulate=accumulate, progress=False, accelerator="cpu", tensorboard=False,
             mask_picture=False)
    assert sorted(counts) == list(range(4 * accumulate))
    # iterations 1 and 4 log (the first one, and every log_every-th) on their last micro-batch
    logging = {accumulate - 1, 4 * accumulate - 1}
    quiet = {i: dict(ops) for i, ops in counts.items() if i not in logging}
    assert all(not ops for ops in quiet.values()), quiet
