"""`marlin lipsync`: train-syncnet | train | infer | evaluate | toy (see docs/lipsync.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from . import add_no_progress

# the config sections each training / scoring action reads (flags generated from their fields)
SECTIONS = {"train-syncnet": ("data", "syncnet", "syncnet_training"), "train": ("data", "generator", "training"),
            "evaluate": ("data", "evaluation")}
# fields without a generated flag: the ViT architecture dict (from --marlin-config / --marlin), and list fields
# given as several paths after one flag (hand-written below)
SKIP = ("generator.marlin", "data.root", "data.videos", "evaluation.fid_real")


def _config_args(p: argparse.ArgumentParser, action: str) -> None:
    """--config, --set and one flag per field of the action's sections (default: the config's value)."""
    import dataclasses
    import typing

    from ..config import add_arguments
    from ..lipsync.config import LipsyncConfig
    from ..lipsync.generator import ENCODERS

    p.add_argument("--config", help="YAML with the sections data, syncnet, generator, syncnet_training, training, "
                   "evaluation (docs/lipsync.md); --set and the flags override it")
    types = typing.get_type_hints(LipsyncConfig)
    choices = {"generator.encoder": ENCODERS, "syncnet.arch": ("ours", "wav2lip"),
               "data.split": ("pretrain", "train", "val", "test")}
    for f in dataclasses.fields(LipsyncConfig):
        if f.name in SECTIONS[action]:
            add_arguments(p, types[f.name], prefix=f"{f.name}.", skip=SKIP, short=True, choices=choices)
    p.add_argument("--data", dest="cfg:data.root", metavar="ROOT", help="LRS2 root: <split>.txt lists, videos in main/ (pretrain/ "
                   "for the pretrain list) [data.root]")
    p.add_argument("--videos", dest="cfg:data.videos", nargs="+", metavar="PATH",
                   help="instead of --data: cropped face videos (files, folders, txt lists) [data.videos]")
    if action == "evaluate":
        p.add_argument("--fid-real", dest="cfg:evaluation.fid_real", nargs="+", metavar="PATH",
                       help="real face videos to compute FID against [evaluation.fid_real]")


def resolve_config(args):
    """The `LipsyncConfig` of a training / scoring action: --config, then --set, then the flags given."""
    from ..config import values_from_args
    from ..lipsync.config import load_config

    return load_config(args.config, args.set, values_from_args(args))


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def _device(args):
    from ..devices import resolve_device

    return resolve_device(args.device, what="--device")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("train-syncnet", help="train the SyncNet expert (5- or 16-frame windows)")
    p.add_argument("--out", required=True, help="checkpoint; training resumes from it when it exists")
    _config_args(p, "train-syncnet")
    _device_arg(p)
    add_no_progress(p)

    p = sub.add_parser("train", help="train the generator (cnn / vit / marlin / wav2lip face encoder)")
    p.add_argument("--out", required=True, help="checkpoint; training resumes from it when it exists")
    _config_args(p, "train")
    _device_arg(p)
    add_no_progress(p)

    p = sub.add_parser("infer", help="lip-sync a face video to an audio track; writes an mp4 with the audio")
    p.add_argument("--checkpoint", required=True, help="generator checkpoint from `marlin lipsync train`, or "
                   "Wav2Lip's released wav2lip.pth / wav2lip_gan.pth")
    p.add_argument("--face", required=True, help="cropped face video, folder of face jpgs, or face item")
    p.add_argument("--audio", required=True, help="audio or video file whose audio drives the lips")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--paste", action="store_true", help="paste faces back into the face item's source video")
    p.add_argument("--preview", help="also write a PNG: 8 input faces above the generated ones")
    p.add_argument("--batch", type=int, default=4, help="windows per forward pass")
    _device_arg(p)
    add_no_progress(p)

    p = sub.add_parser("evaluate", help="LSE-D / LSE-C with a SyncNet, optional FID")
    p.add_argument("--out", required=True, help="directory for per-video results and summary.json")
    _config_args(p, "evaluate")
    _device_arg(p)
    add_no_progress(p)

    p = sub.add_parser("toy", help="write a tiny LRS2-layout dataset of generated talking clips (tone bursts)")
    p.add_argument("out")
    p.add_argument("--speakers", type=int, default=2)
    p.add_argument("--per-speaker", type=int, default=4)
    p.add_argument("--frames", type=int, default=75)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if hasattr(args, "device"):  # resolved once, before any data or model loads
        args.device = _device(args)
    return {"train-syncnet": _train_syncnet, "train": _train, "infer": _infer, "evaluate": _evaluate,
            "toy": _toy}[args.action](args)


def _train_syncnet(args) -> int:
    from ..config import save_resolved, to_dict
    from ..lipsync.config import entries
    from ..lipsync.data import ClipStore
    from ..lipsync.train import train_syncnet

    cfg = resolve_config(args)
    model, train = cfg.syncnet, cfg.syncnet_training
    store = ClipStore(entries(cfg.data), model.face_size, min_frames=model.window + train.min_offset + 1)
    _save_run_config(args.out, {"data": to_dict(cfg.data), "syncnet": to_dict(model),
                                "syncnet_training": to_dict(train)}, save_resolved)
    hist = train_syncnet(store, args.out, model, train, device=args.device, workers=cfg.data.workers,
                         progress=not args.no_progress)
    _report(hist, lambda h: h, "loss", args.out, store)
    return 0


def _train(args) -> int:
    from ..config import save_resolved, to_dict
    from ..lipsync.config import entries, resolve_generator
    from ..lipsync.data import ClipStore
    from ..lipsync.train import train_generator

    cfg = resolve_config(args)
    model, state = resolve_generator(cfg.generator, cfg.training)
    store = ClipStore(entries(cfg.data), model.face_size, min_frames=model.window)
    _save_run_config(args.out, {"data": to_dict(cfg.data), "generator": to_dict(model),
                                "training": to_dict(cfg.training)}, save_resolved)
    hist = train_generator(store, args.out, model, cfg.training, encoder_state=state, device=args.device,
                           workers=cfg.data.workers, progress=not args.no_progress)
    _report(hist, lambda h: h["l1"], "l1", args.out, store)
    return 0


def _save_run_config(out, sections: dict, save_resolved) -> None:
    """The resolved configuration beside the checkpoint: OUT with the suffix .config.yaml."""
    from pathlib import Path

    out = Path(out)
    save_resolved(sections, out.parent, out.with_suffix(".config.yaml").name)


def _report(hist, key, name, out, store) -> None:
    import numpy as np

    if hist:
        k = max(1, min(20, len(hist) // 4))
        print(f"{name}: first {k} steps {np.mean([key(h) for h in hist[:k]]):.4f} -> "
              f"last {k} steps {np.mean([key(h) for h in hist[-k:]]):.4f} ({len(hist)} steps); saved {out}")
    for n, err in store.bad.items():
        print(f"skipped {n}: {err}", file=sys.stderr)


def _infer(args) -> int:
    from ..lipsync.infer import lipsync_file
    from ..lipsync.train import load_generator

    gen = load_generator(args.checkpoint).to(args.device)
    out = lipsync_file(gen, args.face, args.audio, args.out, args.batch, args.paste, preview=args.preview,
                       progress=not args.no_progress)
    print(f"wrote {out}")
    return 0


def _evaluate(args) -> int:
    from ..config import save_resolved, to_dict
    from ..lipsync.config import entries as data_entries
    from ..lipsync.data import video_entries
    from ..lipsync.evaluate import evaluate_fid, evaluate_lse, load_scorer, write_summary

    cfg = resolve_config(args)
    ev = cfg.evaluation
    if not ev.syncnet:
        raise ValueError("evaluate needs a scoring SyncNet: --syncnet FILE (evaluation.syncnet)")
    entries = data_entries(cfg.data)
    res = evaluate_lse(load_scorer(ev.syncnet, args.device), entries, args.out, ev.vshift,
                       progress=not args.no_progress)
    summary = res["summary"]
    if ev.fid_real:
        from ..lipsync.fid import load_extractor

        opts = {"config": ev.fid_config} if ev.fid_extractor == "marlin" else {}
        opts["device"] = args.device
        ext = load_extractor(ev.fid_extractor, ev.fid_weights, **opts)
        summary["fid"] = evaluate_fid(ext, entries, video_entries(ev.fid_real), ev.fid_size)
        summary["fid_extractor"] = ev.fid_extractor
    write_summary(args.out, summary)
    save_resolved({"data": to_dict(cfg.data), "evaluation": to_dict(ev)}, args.out)
    print(f"{'video':40s} {'LSE-D':>7s} {'LSE-C':>7s} {'offset':>6s}")
    for name, r in sorted(res["results"].items()):
        print(f"{name:40s} {r['lse_d']:7.3f} {r['lse_c']:7.3f} {r['av_offset']:6d}")
    print(json.dumps({k: v for k, v in summary.items() if k != "failed"}))
    for name, err in summary["failed"].items():
        print(f"skipped {name}: {err}", file=sys.stderr)
    return 1 if summary["failed"] or not res["results"] else 0  # some inputs failed (listed in summary.json)


def _toy(args) -> int:
    from ..lipsync.toy import write_toy_lrs2

    names = write_toy_lrs2(args.out, args.speakers, args.per_speaker, args.frames, args.size, args.seed)
    print(f"wrote {len(names)} clips under {args.out}/main with train/val/test lists")
    return 0
