"""`marlin lipsync`: train-syncnet | train | infer | evaluate | toy (see docs/lipsync.md)."""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data (LRS2 layout or face videos with audio)")
    g.add_argument("--data", help="LRS2 root: main/<speaker>/<id>.mp4 and <split>.txt lists")
    g.add_argument("--split", default="train", help="LRS2 split list to use (default: train)")
    g.add_argument("--faces", help="root of preprocessed faces <speaker>/<id>/ (face items or Wav2Lip jpg folders)")
    g.add_argument("--videos", nargs="+", help="instead of --data: cropped face videos (files, folders, txt lists)")


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


def _device(args) -> str:
    import torch

    return args.device or ("cuda" if torch.cuda.is_available() else "cpu")


def _entries(args):
    from ..lipsync.data import lrs2_entries, video_entries

    if bool(args.data) == bool(args.videos):
        raise SystemExit("give exactly one of --data (LRS2 layout) or --videos")
    return lrs2_entries(args.data, args.split, args.faces) if args.data else video_entries(args.videos)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("train-syncnet", help="train the SyncNet expert (5- or 16-frame windows)")
    _data_args(p)
    p.add_argument("--out", required=True, help="checkpoint (.pt); training resumes from it when it exists")
    p.add_argument("--window", type=int, default=5, help="frames per window: 5 (Wav2Lip) or 16 (MARLIN)")
    p.add_argument("--face-size", type=int, default=96)
    p.add_argument("--width", type=int, default=32, help="channels of the first stage")
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--min-offset", type=int, default=2, help="negatives shift the audio by at least this many frames")

    p = sub.add_parser("train", help="train the generator (cnn / vit / marlin face encoder)")
    _data_args(p)
    p.add_argument("--out", required=True, help="checkpoint (.pt); training resumes from it when it exists")
    p.add_argument("--syncnet", help="trained SyncNet expert (frozen); needed unless --sync-wt 0")
    p.add_argument("--encoder", choices=("cnn", "vit", "marlin"), default="cnn")
    p.add_argument("--marlin", help="MARLIN checkpoint for --encoder marlin (official .pt/.ckpt or ours)")
    p.add_argument("--marlin-config", help="preset name or YAML of the MARLIN architecture (vit: default "
                   "marlin_vit_base_ytf; marlin: needed unless the checkpoint carries its config)")
    p.add_argument("--window", type=int, default=5, help="frames per sample for cnn (vit/marlin: the encoder's frames)")
    p.add_argument("--face-size", type=int, default=96)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--audio-dim", type=int, default=512)
    p.add_argument("--decoder-width", type=int, default=256)
    p.add_argument("--disc-width", type=int, default=32)
    p.add_argument("--encoder-lr", type=float,
                   help="learning rate of the vit/marlin face encoder (default --lr; 0 freezes it)")
    p.add_argument("--sync-wt", type=float, default=0.03, help="sync loss weight (Wav2Lip: 0.03)")
    p.add_argument("--sync-after", type=float, help="keep the sync weight at 0 until the expert's loss on generated "
                   "windows (mean of 20 steps) is below this (Wav2Lip: 0.75)")
    p.add_argument("--disc-wt", type=float, default=0.07, help="visual-quality GAN loss weight (Wav2Lip: 0.07)")

    for p in sub.choices.values():
        p.add_argument("--steps", type=int, default=10000, help="total optimisation steps")
        _device_arg(p)
        p.add_argument("--batch", type=int, default=16)
        p.add_argument("--lr", type=float, default=1e-4)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--save-every", type=int, default=500)
        p.add_argument("--workers", type=int, default=0, help="processes that decode and batch the data (0: none)")

    p = sub.add_parser("infer", help="lip-sync a face video to an audio track; writes an mp4 with the audio")
    p.add_argument("--checkpoint", required=True, help="generator checkpoint from `marlin lipsync train`")
    p.add_argument("--face", required=True, help="cropped face video, folder of face jpgs, or face item")
    p.add_argument("--audio", required=True, help="audio or video file whose audio drives the lips")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--paste", action="store_true", help="paste faces back into the face item's source video")
    p.add_argument("--preview", help="also write a PNG: 8 input faces above the generated ones")
    p.add_argument("--batch", type=int, default=4, help="windows per forward pass")
    _device_arg(p)

    p = sub.add_parser("evaluate", help="LSE-D / LSE-C with a SyncNet, optional FID")
    _data_args(p)
    p.add_argument("--syncnet", required=True, help="our SyncNet checkpoint, or syncnet_python's syncnet_v2.model")
    p.add_argument("--out", required=True, help="directory for per-video results and summary.json")
    p.add_argument("--vshift", type=int, default=15, help="offsets searched: -vshift..vshift frames")
    p.add_argument("--fid-real", nargs="+", help="real face videos to compute FID against")
    p.add_argument("--fid-extractor", default="inception", help="FID feature extractor (inception, marlin)")
    p.add_argument("--fid-weights", help="weights file of the FID extractor (never downloaded)")
    p.add_argument("--fid-config", help="for --fid-extractor marlin: preset or YAML when the file has no config")
    p.add_argument("--fid-size", type=int, default=96, help="frames are resized to this size for FID")
    _device_arg(p)

    p = sub.add_parser("toy", help="write a tiny LRS2-layout dataset of generated talking clips (tone bursts)")
    p.add_argument("out")
    p.add_argument("--speakers", type=int, default=2)
    p.add_argument("--per-speaker", type=int, default=4)
    p.add_argument("--frames", type=int, default=75)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return {"train-syncnet": _train_syncnet, "train": _train, "infer": _infer, "evaluate": _evaluate,
            "toy": _toy}[args.action](args)


def _train_syncnet(args) -> int:
    from ..lipsync.data import ClipStore
    from ..lipsync.syncnet import SyncNetConfig
    from ..lipsync.train import train_syncnet

    cfg = SyncNetConfig(args.window, args.face_size, args.width, args.stages, args.embed_dim)
    store = ClipStore(_entries(args), args.face_size, min_frames=args.window + args.min_offset + 1)
    hist = train_syncnet(store, args.out, cfg, args.steps, args.batch, args.lr, args.seed, args.save_every,
                         args.min_offset, _device(args), args.workers)
    _report(hist, lambda h: h, "loss", args.out, store)
    return 0


def _train(args) -> int:
    from ..lipsync.data import ClipStore
    from ..lipsync.generator import GeneratorConfig
    from ..lipsync.train import load_syncnet, train_generator
    from ..models import Marlin, resolve_config

    state, window, mcfg = None, args.window, {}
    if args.encoder == "marlin":
        if not args.marlin:
            raise ValueError("--encoder marlin needs --marlin CHECKPOINT")
        model = Marlin.from_file(args.marlin_config, args.marlin, full_model=False)
        state, mcfg = model.encoder.state_dict(), model.config.to_dict()
    elif args.encoder == "vit":
        mcfg = resolve_config(args.marlin_config or "marlin_vit_base_ytf").to_dict()
    if mcfg:
        window = mcfg["n_frames"]
    cfg = GeneratorConfig(args.encoder, window, args.face_size, args.width, args.audio_dim, args.decoder_width, mcfg)
    syncnet = load_syncnet(args.syncnet) if args.syncnet else None
    store = ClipStore(_entries(args), args.face_size, min_frames=window)
    hist = train_generator(store, args.out, cfg, syncnet, args.steps, args.batch, args.lr, args.sync_wt, args.disc_wt,
                           args.seed, args.save_every, state, args.disc_width, _device(args), args.encoder_lr,
                           args.workers, args.sync_after)
    _report(hist, lambda h: h["l1"], "l1", args.out, store)
    return 0


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

    gen = load_generator(args.checkpoint).to(_device(args))
    out = lipsync_file(gen, args.face, args.audio, args.out, args.batch, args.paste, preview=args.preview)
    print(f"wrote {out}")
    return 0


def _evaluate(args) -> int:
    from ..lipsync.data import video_entries
    from ..lipsync.evaluate import evaluate_fid, evaluate_lse, load_scorer, write_summary

    entries = _entries(args)
    res = evaluate_lse(load_scorer(args.syncnet, _device(args)), entries, args.out, args.vshift)
    summary = res["summary"]
    if args.fid_real:
        from ..lipsync.fid import load_extractor

        opts = {"config": args.fid_config} if args.fid_extractor == "marlin" else {}
        opts["device"] = _device(args)
        ext = load_extractor(args.fid_extractor, args.fid_weights, **opts)
        summary["fid"] = evaluate_fid(ext, entries, video_entries(args.fid_real), args.fid_size)
        summary["fid_extractor"] = args.fid_extractor
    write_summary(args.out, summary)
    print(f"{'video':40s} {'LSE-D':>7s} {'LSE-C':>7s} {'offset':>6s}")
    for name, r in sorted(res["results"].items()):
        print(f"{name:40s} {r['lse_d']:7.3f} {r['lse_c']:7.3f} {r['av_offset']:6d}")
    print(json.dumps({k: v for k, v in summary.items() if k != "failed"}))
    for name, err in summary["failed"].items():
        print(f"skipped {name}: {err}", file=sys.stderr)
    return 0 if res["results"] else 1


def _toy(args) -> int:
    from ..lipsync.toy import write_toy_lrs2

    names = write_toy_lrs2(args.out, args.speakers, args.per_speaker, args.frames, args.size, args.seed)
    print(f"wrote {len(names)} clips under {args.out}/main with train/val/test lists")
    return 0
