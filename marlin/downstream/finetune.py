"""`marlin finetune`: encoder + linear head trained end to end on raw clips (a random 16-frame window at
sample rate 2 per video and epoch); evaluation averages the logits of all official windows of a video."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..devices import resolve_device
from ..extract import clips_per_call, clips_to_tensor, encode_clips, prefetch
from ..precision import Precision
from ..video import VideoError
from .config import RunConfig
from .datasets import Dataset, Sample
from .datasets.base import DatasetError
from .fewshot import few_shot_indices
from .metrics import compute_metrics
from .model import VideoClassifier, load_encoder
from .runs import report_skipped, run_all, run_name, run_settings
from .sources import eval_clips, materialize, random_clip
from .train import TrainConfig, fit

TRAIN_STATE = "train_state.safetensors"  # in a run's folder while it trains
FT_DEFAULTS = dict(lr=1e-4, batch_size=8, max_epochs=30, patience=5, lr_patience=2)


class ClipReader:
    """Clips of samples for one run; bad videos are recorded in ``failures`` and skipped."""

    def __init__(self, cfg: RunConfig, cache: Path, clip_frames: int, size: int):
        self.cache, self.L, self.S = cache, clip_frames, size
        self.rate, self.stride = cfg.windows.sample_rate, cfg.windows.stride
        self.failures: dict[str, str] = {}

    def _source(self, s: Sample) -> Path:
        return materialize(s, self.cache)

    def random(self, s: Sample, rng: np.random.Generator) -> np.ndarray | None:
        try:
            return random_clip(self._source(s), self.L, self.S, rng, self.rate)
        except (VideoError, DatasetError, OSError, ValueError) as e:
            self.failures[s.key] = str(e)
            return None

    def windows(self, s: Sample) -> list[np.ndarray]:
        try:
            return list(eval_clips(self._source(s), self.L, self.S, self.rate, self.stride))
        except (VideoError, DatasetError, OSError, ValueError) as e:
            self.failures[s.key] = str(e)
            return []


def train_batches(samples: list[Sample], reader: ClipReader, batch_size: int, device: torch.device,
                  workers: int = 4):
    """One epoch of (clips (B, 3, L, S, S) on ``device``, targets) in a seeded random order, one random window
    each.

    The clips of a batch are decoded by ``workers`` threads; each sample has its own seeded generator, so
    the result does not depend on the number of threads. On a CUDA device the next batches are decoded while
    the GPU trains (`marlin.extract.prefetch`) and travel as uint8 from pinned memory (`clips_to_tensor`)."""
    from concurrent.futures import ThreadPoolExecutor

    cuda = device.type == "cuda"

    def epoch(gen: torch.Generator):
        batches = prefetch(host_batches(gen)) if cuda else host_batches(gen)
        for clips, targets in batches:  # to the device in this thread, in the order of the steps
            yield clips_to_tensor(clips, device), targets

    def host_batches(gen: torch.Generator):
        order = torch.randperm(len(samples), generator=gen).tolist()
        seeds = torch.randint(2 ** 31, (len(order),), generator=gen).tolist()
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for i in range(0, len(order), batch_size):
                batch = [samples[j] for j in order[i:i + batch_size]]
                clips = list(pool.map(lambda s, sd: reader.random(s, np.random.default_rng(sd)), batch,
                                      seeds[i:i + batch_size]))
                picked = [(s, c) for s, c in zip(batch, clips) if c is not None]
                if picked:
                    clips = np.stack([c for _, c in picked])
                    yield (torch.from_numpy(clips).pin_memory() if cuda else clips,
                           np.stack([np.asarray(s.target) for s, _ in picked]))
    return epoch


@torch.no_grad()
def video_logits(model: VideoClassifier, samples: list[Sample], reader: ClipReader, batch_size: int | None,
                 device: torch.device, progress: bool = False) -> tuple[torch.Tensor, np.ndarray, list[Sample]]:
    """Per-video logits averaged over all windows (K,), for the samples whose video could be read;
    ``batch_size``: clips per call, default `marlin.extract.clips_per_call`."""
    from tqdm.auto import tqdm

    model.eval()
    batch_size = clips_per_call(model.config, device, batch_size)
    logits, kept = [], []
    for s in tqdm(samples, desc="evaluate", disable=not progress, leave=False):
        clips = reader.windows(s)
        if not clips:
            continue
        out = encode_clips(lambda x: model(x.to(device)), clips, batch_size, device)
        logits.append(out.mean(0))
        kept.append(s)
    if not kept:
        raise ValueError("no video of this split could be read")
    return torch.stack(logits), np.stack([np.asarray(s.target) for s in kept]), kept


def finetune_one(cfg: RunConfig, ds: Dataset, frac: float, seed: int, cache: Path, device: torch.device,
                 progress: bool, checkpoint: Path | None = None,
                 identity: dict | None = None) -> tuple[VideoClassifier, dict, ClipReader]:
    """Fine-tune one model (fresh encoder from the config) on a few-shot subset; returns the best model.
    ``checkpoint``: the training state, saved after every evaluation and resumed from when it exists (see
    `marlin.downstream.train.fit`; ``identity``: what else defines the run)."""
    task = ds.task
    marlin = load_encoder(cfg.encoder)
    torch.manual_seed(seed)
    model = VideoClassifier(marlin.encoder, task.num_outputs, Precision.named(cfg.precision)).to(device)
    reader = ClipReader(cfg, cache, marlin.config.n_frames, marlin.config.img_size)
    train = ds.splits["train"]
    idx = few_shot_indices(ds.targets("train"), frac, task.kind, seed)
    train = [train[i] for i in idx]
    val = ds.splits.get("val") or train
    tc = TrainConfig.from_dict({**FT_DEFAULTS, **cfg.train, "seed": seed})
    bs = cfg.batch_size_eval
    result = fit(model, task, train_batches(train, reader, tc.batch_size, device, cfg.workers),
                 lambda m: video_logits(m, val, reader, bs, device)[:2], tc, progress=progress,
                 desc=f"finetune {task.name}", checkpoint=checkpoint, identity=identity)
    logits, y, kept = video_logits(model, ds.splits["test"], reader, bs, device, progress)
    test = compute_metrics(task.kind, task.scores(logits), y, label_names=task.labels)
    run = {"n_train": len(train), "n_val": len(val) if ds.splits.get("val") else 0, "n_test": len(kept),
           "best_epoch": result.best_epoch, "monitor": result.monitor, "val": result.val_metrics, "test": test,
           "history": result.history, "train_config": tc.to_dict()}
    return model, run, reader


def run_finetune(cfg: RunConfig, progress: bool = True) -> dict:
    """Run a (loaded) fine-tuning config; returns the metrics.json data."""
    if cfg.crop_face:
        raise ValueError("fine-tuning reads face crops: run `marlin preprocess` on the videos first "
                         "(and point the dataset at its output) instead of crop_face")
    device = resolve_device(cfg.device)

    def prepare(ds: Dataset, fold: int, notes: list):
        if not ds.splits.get("train") or not ds.splits.get("test"):
            raise ValueError(f"{cfg.root}: no training or test samples ({ds.summary()})")
        if not ds.splits.get("val"):
            notes.append(f"fold {fold}: no validation samples; the training set selected the best epoch")

        def train(frac: float, seed: int):
            out = Path(cfg.out)
            # an interrupted run resumes from its training state; a finished one drops it (the weights are kept)
            state = out / run_name(fold, frac, seed) / TRAIN_STATE
            settings = {k: v for k, v in run_settings(cfg).items() if k != "train"}  # fit compares the train section
            identity = {"run": settings, "fold": fold, "few_shot": frac, "seed": seed}
            model, run, reader = finetune_one(cfg, ds, frac, seed, out / "segments", device, progress, state, identity)
            state.unlink(missing_ok=True)
            report_skipped(out, fold, [f"{k}: {v}" for k, v in reader.failures.items()], "videos")
            run["failed_inputs"] = len(ds.skipped) + len(reader.failures)
            return run, "model.safetensors", model.state_dict(), {"marlin_config": model.config.to_dict()}
        return train

    return run_all(cfg, "finetune", prepare)
