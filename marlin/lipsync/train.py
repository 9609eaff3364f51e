"""Training loops for the SyncNet expert and the generator; resumable checkpoints (plain tensors and
containers, saved atomically, loaded with weights_only)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..checkpoints import CheckpointError, load_file, save_torch
from functools import partial

from .data import ClipStore, batch_stream, generator_batch, sync_batch
from .generator import Discriminator, Generator, GeneratorConfig
from .losses import DISC_WT, SYNC_WT, discriminator_loss, generator_losses
from .syncnet import SyncNet, SyncNetConfig, sync_loss

log = logging.getLogger(__name__)
FORMAT = "marlin-lipsync/1"


def save_checkpoint(path, kind: str, config: dict, step: int, history: list, **states) -> None:
    save_torch(path, {"format": FORMAT, "kind": kind, "config": config, "step": step, "history": history,
                      **{k: v for k, v in states.items() if v is not None}})


def load_checkpoint(path, kind: str) -> dict:
    """A lipsync checkpoint of ``kind`` ("syncnet" or "generator"); errors name the file."""
    ck = load_file(path)
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a lipsync checkpoint (written by `marlin lipsync train[-syncnet]`)")
    if ck.get("kind") != kind:
        raise CheckpointError(f"{path}: is a {ck.get('kind')} checkpoint, expected a {kind} checkpoint")
    return ck


def resume_from(out: Path, kind: str, label: str, config: dict, model, opt) -> dict:
    """Restore `model` and `opt` from the checkpoint at `out` (which must hold the same config); returns it."""
    ck = load_checkpoint(out, kind)
    if ck["config"] != config:
        raise CheckpointError(f"{out}: exists with another {label} config {ck['config']}; choose another --out")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    return ck


def load_syncnet(path) -> SyncNet:
    ck = load_checkpoint(path, "syncnet")
    net = SyncNet(SyncNetConfig(**ck["config"]))
    net.load_state_dict(ck["model"])
    return net.eval()


def load_generator(path) -> Generator:
    ck = load_checkpoint(path, "generator")
    gen = Generator(GeneratorConfig(**ck["config"]))
    gen.load_state_dict(ck["model"])
    return gen.eval()


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


def _move_optimizer(opt, device) -> None:
    """Optimizer state restored on the CPU follows its parameters to ``device``."""
    for state in opt.state.values():
        for k, v in state.items():
            if torch.is_tensor(v) and k != "step":
                state[k] = v.to(device)


def _sample_png(out: Path, inputs, pred, target) -> None:
    """``out`` + ".png": rows masked input, reference, generated, ground truth (one training sample)."""
    from .preview import to_uint8, write_grid

    write_grid(out.with_suffix(".png"), [to_uint8(inputs[:, :3]), to_uint8(inputs[:, 3:]), to_uint8(pred),
                                         to_uint8(target)])


def _progress(total: int, start: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="step", dynamic_ncols=True)


def train_syncnet(store: ClipStore, out, cfg: SyncNetConfig, steps: int, batch: int = 16, lr: float = 1e-4,
                  seed: int = 0, save_every: int = 500, min_offset: int = 2, device: str = "cpu",
                  workers: int = 0) -> list[float]:
    """Train (or resume from ``out``) the expert for ``steps`` total steps; returns the per-step losses.

    ``workers`` > 0 builds batches in that many DataLoader processes."""
    out = Path(out)
    net = SyncNet(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    step, history = 0, []
    if out.exists():
        ck = resume_from(out, "syncnet", "SyncNet", cfg.to_dict(), net, opt)
        step, history = int(ck["step"]), list(ck["history"])
    batches = batch_stream(store, partial(sync_batch, batch=batch, window=cfg.window, min_offset=min_offset),
                           [seed, step], workers)
    net.train()
    with _progress(steps, step, "syncnet") as bar:
        while step < steps:
            faces, mels, labels = (x.to(device) for x in next(batches))
            loss = sync_loss(*net(faces, mels), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            history.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(history[-20:]):.4f}")
            if step % save_every == 0 or step == steps:
                save_checkpoint(out, "syncnet", cfg.to_dict(), step, history, model=net.state_dict(),
                                optimizer=opt.state_dict())
    return history


def train_generator(store: ClipStore, out, cfg: GeneratorConfig, syncnet: SyncNet | None, steps: int,
                    batch: int = 4, lr: float = 1e-4, sync_wt: float = SYNC_WT, disc_wt: float = DISC_WT,
                    seed: int = 0, save_every: int = 500, encoder_state: dict | None = None,
                    disc_width: int = 32, device: str = "cpu", encoder_lr: float | None = None,
                    workers: int = 0, sync_after: float | None = None) -> list[dict]:
    """Train (or resume) the generator with L1 + frozen-expert sync + GAN losses; returns per-step losses.
    Each save also writes ``out`` with suffix .png (masked input / reference / generated / ground truth).

    ``encoder_state``: MARLIN encoder weights to start the ``marlin`` face encoder from (required for it);
    ``encoder_lr``: learning rate of the ViT face encoder (default ``lr``; 0 freezes it);
    ``sync_after``: Wav2Lip's schedule: the sync term stays at weight 0 until the expert's loss on the generated
    windows, averaged over the last 20 steps, falls below this value (Wav2Lip: 0.75), then ``sync_wt`` applies."""
    out = Path(out)
    gen = Generator(cfg)
    disc = Discriminator(cfg.face_size, disc_width) if disc_wt > 0 else None
    sync_window = syncnet.window if syncnet is not None else cfg.window
    if syncnet is not None:
        if syncnet.config.face_size != cfg.face_size:
            raise ValueError(f"SyncNet was trained on {syncnet.config.face_size} px faces, the generator uses "
                             f"{cfg.face_size} px")
        syncnet.eval().requires_grad_(False)
    elif sync_wt > 0:
        raise ValueError("a sync loss weight > 0 needs a trained SyncNet expert")
    sync_on = sync_after is None
    opt = torch.optim.Adam(_param_groups(gen, lr, encoder_lr), lr=lr, betas=(0.5, 0.999))
    dopt = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999)) if disc is not None else None
    step, history = 0, []
    if out.exists():
        ck = resume_from(out, "generator", "generator", cfg.to_dict(), gen, opt)
        if disc is not None and "disc" in ck:
            disc.load_state_dict(ck["disc"])
            dopt.load_state_dict(ck["disc_optimizer"])
        step, history = int(ck["step"]), list(ck["history"])
        sync_on = sync_on or bool(ck.get("sync_on", False))
    elif cfg.encoder == "marlin":
        if encoder_state is None:
            raise ValueError("the 'marlin' encoder starts from MARLIN weights: pass encoder_state (--marlin)")
        gen.face.encoder.load_state_dict(encoder_state)
    gen.to(device)
    if disc is not None:
        disc.to(device)
        _move_optimizer(dopt, device)
    if syncnet is not None:
        syncnet.to(device)
    _move_optimizer(opt, device)
    batches = batch_stream(store, partial(generator_batch, batch=batch, window=cfg.window, sync_window=sync_window),
                           [seed, step], workers)
    gen.train()
    with _progress(steps, step, f"generator ({cfg.encoder})") as bar:
        while step < steps:
            inputs, chunks, sync_mels, target = (x.to(device) for x in next(batches))
            pred = gen(inputs, chunks)
            w = sync_wt if sync_on else 0.0
            losses = generator_losses(pred, target, sync_mels, syncnet, disc, w, disc_wt)
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
            rec = {k: float(v.detach()) for k, v in losses.items()}
            if disc is not None:
                dloss = discriminator_loss(disc, pred, target)
                dopt.zero_grad()
                dloss.backward()
                dopt.step()
                rec["disc"] = float(dloss.detach())
            step += 1
            history.append({**rec, "sync_wt": w})
            if not sync_on and len(history) >= 20 and np.mean([h["sync"] for h in history[-20:]]) < sync_after:
                sync_on = True
                log.info("step %d: expert sync loss below %g, sync weight %g from now on", step, sync_after, sync_wt)
            bar.update(1)
            bar.set_postfix(l1=f"{np.mean([h['l1'] for h in history[-20:]]):.4f}")
            if step % save_every == 0 or step == steps:
                _sample_png(out, inputs[0], pred[0], target[0])
                save_checkpoint(out, "generator", cfg.to_dict(), step, history, sync_on=sync_on,
                                model=gen.state_dict(), optimizer=opt.state_dict(),
                                disc=disc.state_dict() if disc else None,
                                disc_optimizer=dopt.state_dict() if dopt else None)
    return history
