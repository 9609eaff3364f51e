"""Shared test helpers (not a test module): the tiny model configuration and toy preprocessed items."""
import numpy as np

from marlin.models import MarlinConfig

TINY_ARCH = dict(img_size=32, patch_size=16, n_frames=4, tubelet_size=2, encoder_embed_dim=16, encoder_depth=1,
                 encoder_num_heads=2, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2)


def tiny_config(**overrides) -> MarlinConfig:
    """The tests' tiny MARLIN (32 px, 4 frames, 16 px patches: 2 x 2 x 2 = 8 tokens, width 16, one block)."""
    return MarlinConfig(**{**TINY_ARCH, **overrides})


# a tiny pretraining config in the official YAML layout (+ our trainer: section): 32 px, 8 px patches, 8 frames
TINY_PRETRAIN = {"model_name": "t", "img_size": 32, "patch_size": 8, "clip_frames": 8, "tubelet_size": 2,
                 "temporal_sample_rate": 2, "mask_percentage_target": 0.75,
                 "learning_rate": {"base": 0.05, "warmup": 0.0, "min": 1e-3, "warmup_epochs": 0},
                 "encoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
                 "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
                 "trainer": {"batch_size": 2, "num_workers": 0, "val_every": 1000, "val_batches": 1,
                             "log_every": 1, "ckpt_every": 1000, "warmup_steps": 0}}


def toy_frames(i: int, t: int, s: int):
    """A moving bright square 'face' (parse: skin with a nose-labelled centre) on a dark background."""
    frames = np.full((t, s, s, 3), 30, np.uint8)
    parse = np.zeros((t, s, s), np.uint8)
    for k in range(t):
        x0 = (k + 3 * i) % (s // 2)
        frames[k, s // 4:3 * s // 4, x0:x0 + s // 2] = (200, 150 + 20 * i % 100, 120)
        parse[k, s // 4:3 * s // 4, x0:x0 + s // 2] = 1
        parse[k, s // 2 - 2:s // 2 + 2, x0 + s // 4 - 2:x0 + s // 4 + 2] = 6
        frames[k][parse[k] == 6] = (90, 60, 200)
    return frames, parse


def make_items(root, n=3, t=20, s=32, parse=True):
    """``n`` preprocessed items (toy_frames) under ``root``; returns root."""
    from marlin.data import write_item

    for i in range(n):
        frames, p = toy_frames(i, t, s)
        write_item(root / f"v{i}", frames, {"fps": 25.0, "source": f"toy{i}"}, parse=p if parse else None)
    return root


def sync_counter():
    """A TorchDispatchMode counting the operations that make the host wait for the device or have data-dependent
    shapes (``.ops``: "nonzero", "masked_select", "_local_scalar_dense" (`.item()`, `float(tensor)`), "item",
    "boolean indexing") while not ``.paused``."""
    from collections import Counter

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    aten = torch.ops.aten
    syncing = {aten.nonzero.default: "nonzero", aten.masked_select.default: "masked_select",
               aten._local_scalar_dense.default: "_local_scalar_dense", aten.item.default: "item"}
    indexing = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}

    class SyncCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: Counter = Counter()
            self.paused = False

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not self.paused:
                if func in syncing:
                    self.ops[syncing[func]] += 1
                elif func in indexing and any(i is not None and i.dtype in (torch.bool, torch.uint8)
                                              for i in args[1]):
                    self.ops["boolean indexing"] += 1
            return func(*args, **(kwargs or {}))

    return SyncCounter()


def pause_in_optimiser(monkeypatch, counter, cls) -> None:
    """``counter`` pauses inside ``cls.step``: the step counters of torch's optimisers are host tensors on a GPU (not
    `capturable`), so their reads never wait for the device."""
    step = cls.step

    def paused(self, *args, **kwargs):
        counter.paused = True
        try:
            return step(self, *args, **kwargs)
        finally:
            counter.paused = False

    monkeypatch.setattr(cls, "step", paused)
