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

from helpers import TINY_PRETRAIN, make_items, pause_in_optimiser, sync_counter
from marlin.train import pretrain
from marlin.train.module import PretrainModule


def test_the_counter_sees_what_it_counts():
    with sync_counter() as c:
        x = torch.arange(4.0)
        x[x > 1]
        x.nonzero()
        float(x.sum())
    assert c.ops == {"boolean indexing": 1, "nonzero": 1, "_local_scalar_dense": 1}


@pytest.mark.parametrize("accumulate", [1, 2])
def test_training_iterations_do_not_synchronise_outside_logging_steps(tmp_path, monkeypatch, accumulate):
    counts = {}  # micro-batch -> Counter
    counter = sync_counter()
    step = PretrainModule.training_step

    def counted_step(self, batch, batch_idx):
        with counter:
            counter.ops = Counter()
            step(self, batch, batch_idx)
        counts[batch_idx] = counter.ops

    monkeypatch.setattr(PretrainModule, "training_step", counted_step)
    pause_in_optimiser(monkeypatch, counter, torch.optim.AdamW)
    pretrain(copy.deepcopy(TINY_PRETRAIN), make_items(tmp_path / "data", n=4), tmp_path / "run", max_steps=4,
             log_every=4, accumulate=accumulate, progress=False, accelerator="cpu", tensorboard=False,
             mask_picture=False)
    assert sorted(counts) == list(range(4 * accumulate))
    # iterations 1 and 4 log (the first one, and every log_every-th) on their last micro-batch
    logging = {accumulate - 1, 4 * accumulate - 1}
    quiet = {i: dict(ops) for i, ops in counts.items() if i not in logging}
    assert all(not ops for ops in quiet.values()), quiet
