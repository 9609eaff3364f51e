"""Training loops for the SyncNet expert and the generator, configured by `marlin.lipsync.config` sections;
resumable checkpoints in the toolkit's container (`marlin.lipsync.checkpoint`), saved atomically, read
weights-only (older "marlin-lipsync/1" files are read too)."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import CheckpointError
from ..config import to_dict
from ..loop import TrainState, due, progress_bar
from .checkpoint import (  # load_lipsync_checkpoint, load_syncnet: also imported from here (public API)
    load_lipsync_checkpoint,
    load_discriminator_weights,
    load_generator,
    load_syncnet,
)
from .config import GeneratorTrainConfig, SyncTrainConfig
from .data import ClipStore, batch_stream, generator_batch, sync_batch
from .generator import Generator, GeneratorConfig, make_discriminator
from .losses import discriminator_loss, generator_losses
from .syncnet import SyncNet, SyncNetConfig, sync_loss

log = logging.getLogger(__name__)

LOG_EVERY = 25  # steps between reads of the losses from the device (and progress bar updates); saves read too


def _train_state(out: Path, network: str, label: str, model, parts: dict) -> TrainState:
    """The resumable state of a lipsync loop at ``out``: a resume needs the same network config ``model`` (a
    checkpoint of one written before a field existed holds that field's default); the history also goes to
    ``out`` with the suffix .history.csv, drawn beside it as .curves.png at every save."""
    from ..errors import require

    require("matplotlib", "lipsync", "the training curves")  # before the first step
    return TrainState(out, "lipsync", {"network": network, "model": model.to_dict()}, parts, match=model,
                      label=label, read=partial(load_lipsync_checkpoint, network=network),
                      history_file=out.with_suffix(".history.csv"))


def _param_groups(gen: Generator, lr: float, encoder_lr: float | None) -> list[dict]:
    """The ViT face encoder may learn at its own rate (pretrained MARLIN weights usually want a lower one)."""
    if encoder_lr is None or gen.config.encoder == "cnn":
        return [{"params": list(gen.parameters())}]
    enc = list(gen.face.encoder.parameters())
    ids = {id(p) for p in enc}
    if encoder_lr == 0:
        gen.face.encoder.requires_grad_(False)
    groups = [{"params": [p for p in gen.parameters() if id(p) not in ids]}]
    return groups + ([{"params": enc, "lr": encoder_lr}] if encoder_lr > 0 else [])


def _sample_png(out: Path, inputs, pred, target) -> None:
    """``out`` + ".png": rows masked input, reference, generated, ground truth (one training sample)."""
    from .preview import to_uint8, write_grid

    write_grid(out.with_suffix(".png"), [to_uint8(inputs[:, :3]), to_uint8(inputs[:, 3:]), to_uint8(pred),
                                         to_uint8(target)])


def train_syncnet(store: ClipStore, out, model: SyncNetConfig, train: SyncTrainConfig | None = None, *,
                  device: str = "cpu", workers: int = 0, progress: bool = True) -> list[float]:
    """Train (or resume from ``out``) the expert ``model`` for ``train.steps`` total steps (default section:
    `SyncTrainConfig()`); returns the per-step losses. ``workers`` > 0 builds batches in that many DataLoader
    processes. Saved every ``train.save_every`` steps and at the end (`marlin.loop.TrainState`)."""
    out, train = Path(out), train or SyncTrainConfig()
    with torch.random.fork_rng(devices=[]):  # the initial weights depend only on the seed
        torch.manual_seed(train.seed)
        net = SyncNet(model).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=train.lr)
    state = _train_state(out, "syncnet", "SyncNet", model, {"model": net, "optimizer": opt})
    ck = state.resume() or {"step": 0, "history": []}
    step, history = ck["step"], ck["history"]
    batches = batch_stream(store, partial(sync_batch, batch=train.batch, window=model.window,
                                          min_offset=train.min_offset), train.seed, step, workers,
                           pin_memory=torch.device(device).type == "cuda")
    net.train()
    pending = []  # the losses of the steps since the last read, on the device
    with progress_bar(train.steps, "syncnet", step, progress) as bar:
        while step < train.steps:
            faces, mels, labels = (x.to(device, non_blocking=True) for x in next(batches))
            loss = sync_loss(*net(faces, mels), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            pending.append(loss.detach())
            bar.update(1)
            saving = due(step, train.save_every, train.steps)
            if saving or step % LOG_EVERY == 0:  # one synchronisation for all of them
                history.extend(torch.stack(pending).tolist())
                pending.clear()
                bar.set_postfix(loss=f"{np.mean(history[-20:]):.4f}")
            if saving:
                state.save(step, history, training=to_dict(train))
    return history


def _start_weights(gen: Generator, disc, model: GeneratorConfig, train: GeneratorTrainConfig,
                   encoder_state: dict | None) -> None:
    """Weights of a fresh run: ``train.init`` (Wav2Lip's released generator or ours), ``train.disc_init``, and the
    MARLIN encoder for the ``marlin`` face encoder."""
    if train.init:
        init = load_generator(train.init)
        if (init.config.encoder, init.config.face_size) != (model.encoder, model.face_size):
            raise ValueError(f"{train.init}: a {init.config.encoder} generator of {init.config.face_size} px faces, "
                             f"the run trains a {model.encoder} generator of {model.face_size} px faces")
        try:
            gen.load_state_dict(init.state_dict())
        except RuntimeError as e:
            raise CheckpointError(f"{train.init}: does not fit the generator {model} ({e})") from None
    if train.disc_init and disc is not None:
        load_discriminator_weights(disc, train.disc_init)
    if model.encoder == "marlin" and not train.init:
        if encoder_state is None:
            raise ValueError("the 'marlin' encoder starts from MARLIN weights: pass encoder_state (--marlin)")
        gen.face.encoder.load_state_dict(encoder_state)


def train_generator(store: ClipStore, out, model: GeneratorConfig, train: GeneratorTrainConfig | None = None,
                    *, syncnet: SyncNet | None = None, encoder_state: dict | None = None, device: str = "cpu",
                    workers: int = 0, progress: bool = True) -> list[dict]:
    """Train (or resume from ``out``) the generator ``model`` with L1 + frozen-expert sync + GAN losses, as
    ``train`` says; returns the per-step losses. Each save also writes ``out`` with suffix .png (masked input /
    reference / generated / ground truth).

    ``syncnet``: the expert (default: loaded from ``train.syncnet``); ``encoder_state``: MARLIN encoder weights
    to start the ``marlin`` face encoder from (required for it unless ``train.init``). ``train.encoder_lr``: rate
    of the ViT face encoder (0 freezes it); ``train.sync_after``: Wav2Lip's schedule: the sync term stays at weight
    0 until the expert's loss on the generated windows, averaged over the last 20 steps, falls below this value
    (Wav2Lip: 0.75), then ``train.sync_wt`` applies. Default section: `GeneratorTrainConfig()`."""
    out, train = Path(out), train or GeneratorTrainConfig()
    with torch.random.fork_rng(devices=[]):  # the initial weights depend only on the seed
        torch.manual_seed(train.seed)
        gen = Generator(model)
        disc = make_discriminator(model, train.disc_width) if train.disc_wt > 0 else None
    if syncnet is None and train.syncnet:
        syncnet = load_syncnet(train.syncnet)
    sync_window = syncnet.window if syncnet is not None else model.window
    if syncnet is not None:
        if syncnet.config.face_size != model.face_size:
            raise ValueError(f"SyncNet was trained on {syncnet.config.face_size} px faces, the generator uses "
                             f"{model.face_size} px")
        syncnet.eval().requires_grad_(False)
    elif train.sync_wt > 0:
        raise ValueError("a sync loss weight > 0 needs a trained SyncNet expert")
    sync_on = train.sync_after is None
    gen.to(device)
    if disc is not None:
        disc.to(device)
    if syncnet is not None:
        syncnet.to(device)
    opt = torch.optim.Adam(_param_groups(gen, train.lr, train.encoder_lr), lr=train.lr, betas=(0.5, 0.999))
    dopt = torch.optim.Adam(disc.parameters(), lr=train.lr, betas=(0.5, 0.999)) if disc is not None else None
    state = _train_state(out, "generator", "generator", model,
                         {"model": gen, "optimizer": opt, "disc": disc, "disc_optimizer": dopt})
    ck = state.resume()
    if ck is None:
        _start_weights(gen, disc, model, train, encoder_state)
        ck = {"step": 0, "history": []}
    step, history = ck["step"], ck["history"]
    sync_on = sync_on or bool(ck.get("sync_on", False))
    make = partial(generator_batch, batch=train.batch, window=model.window, sync_window=sync_window,
                   chunk_before=model.chunk_before(training=True))
    batches = batch_stream(store, make, train.seed, step, workers, pin_memory=torch.device(device).type == "cuda")
    gen.train()
    pending = []  # (losses on the device, sync weight) of the steps since the last read

    def read():  # one synchronisation for all pending steps; the history as if each step were read at once
        values = torch.stack([v for v, _ in pending]).tolist()
        history.extend({**dict(zip(names, row)), "sync_wt": w} for row, (_, w) in zip(values, pending))
        pending.clear()

    with progress_bar(train.steps, f"generator ({model.encoder})", step, progress) as bar:
        while step < train.steps:
            inputs, chunks, sync_mels, target = (x.to(device, non_blocking=True) for x in next(batches))
            pred = gen(inputs, chunks)
            w = train.sync_wt if sync_on else 0.0
            losses = generator_losses(pred, target, sync_mels, syncnet, disc, w, train.disc_wt)
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
            names, values = list(losses), [v.detach().float() for v in losses.values()]
            if disc is not None:
                dloss = discriminator_loss(disc, pred, target)
                dopt.zero_grad()
                dloss.backward()
                dopt.step()
                names, values = names + ["disc"], values + [dloss.detach().float()]
            step += 1
            pending.append((torch.stack(values), w))
            bar.update(1)
            saving = due(step, train.save_every, train.steps)
            # until the sync term is on, Wav2Lip's schedule decides on the last 20 sync losses after every step
            if saving or not sync_on or step % LOG_EVERY == 0:
                read()
                bar.set_postfix(l1=f"{np.mean([h['l1'] for h in history[-20:]]):.4f}")
            if (not sync_on and len(history) >= 20
                    and np.mean([h["sync"] for h in history[-20:]]) < train.sync_after):
                sync_on = True
                log.info("step %d: expert sync loss below %g, sync weight %g from now on", step, train.sync_after,
                         train.sync_wt)
            if saving:
                _sample_png(out, inputs[0], pred[0], target[0])
                state.save(step, history, training=to_dict(train), sync_on=sync_on)
    return history
