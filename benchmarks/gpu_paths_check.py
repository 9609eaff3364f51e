"""Check and time the GPU paths of extraction (issue 30) on a machine with a GPU, in about a minute:

1. float32 features of one video on the CPU and on the GPU (`video_features`, TF32 off at "32"): max |diff| and
   cosine of the pooled features; exit status 1 when they differ by more than --tolerance, which would make the
   feature record's rule (devices listed, not compared) wrong;
2. `encode_clips` on the GPU, clips/s: the CUDA path (uint8 from pinned memory, converted on the device, batches
   decoded by a prefetch thread) against the old one (float32 made on the CPU and copied, decoding in line),
   alternating rounds on the same video; exit status 1 also when their features differ beyond --tolerance.

    python benchmarks/gpu_paths_check.py [--preset marlin_vit_base_ytf] [--precision bf16] [--frames 480]
    python benchmarks/gpu_paths_check.py --cpu      # a tiny run of the script itself (the numbers mean nothing)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from marlin import Marlin
from marlin.extract import clips_to_tensor, encode_clips, video_clips, video_features
from marlin.models.config import MarlinConfig
from marlin.video import write_video


def _video(path: Path, frames: int, size: int) -> Path:
    """A smooth moving pattern (compressible like a face video, unlike noise)."""
    yy, xx = np.mgrid[0:size, 0:size]
    clip = [(127 + 100 * np.sin((xx + 3 * t) / 9.0)[..., None] * np.cos((yy - 2 * t) / 13.0)[..., None]
             * np.array([1.0, 0.8, 0.6])).astype(np.uint8) for t in range(frames)]
    write_video(path, np.stack(clip), fps=25)
    return path


def _old_encode(encode, clips, batch_size, device):
    """Before issue 30: float32 batches made on the CPU, copied from pageable memory, decoding in line."""
    out, batch = [], []
    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            out.append(encode(clips_to_tensor(batch).to(device)).float().cpu())
            batch = []
    if batch:
        out.append(encode(clips_to_tensor(batch).to(device)).float().cpu())
    return torch.cat(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="marlin_vit_base_ytf")
    ap.add_argument("--precision", default="bf16", help="of the timing (the comparison runs at 32)")
    ap.add_argument("--frames", type=int, default=480, help="frames of the timed video (15 windows per 480)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=1e-3, help="max |diff| of CPU and GPU float32 features")
    ap.add_argument("--cpu", action="store_true", help="tiny model, CPU only: checks the script")
    args = ap.parse_args()

    if args.cpu:
        device, cfg = torch.device("cpu"), MarlinConfig(img_size=32, patch_size=16, n_frames=4, tubelet_size=2,
                                                        encoder_embed_dim=16, encoder_depth=1, encoder_num_heads=2)
        args.frames, args.precision = 40, "32"
    elif not torch.cuda.is_available():
        print("no GPU visible: run with --cpu to check the script", file=sys.stderr)
        return 2
    else:
        device, cfg = torch.device("cuda"), args.preset
    torch.manual_seed(0)
    model = Marlin.from_config(cfg, full_model=False).eval()
    size = model.config.img_size
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        short = _video(Path(tmp) / "short.mp4", 96, size)
        long = _video(Path(tmp) / "long.mp4", args.frames, size)
        name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
        print(f"# GPU paths check: {name}, {args.preset if not args.cpu else 'tiny'}\n")

        cpu = video_features(model, short, precision="32")
        dev = video_features(model.to(device), short, precision="32")
        diff = (cpu - dev).abs().max().item()
        cos = torch.nn.functional.cosine_similarity(cpu, dev, dim=-1).min().item()
        failed |= diff > args.tolerance
        print(f"float32 features, CPU vs {device.type} ({len(cpu)} windows): max |diff| {diff:.3g}, "
              f"min cosine {cos:.8f}{'  FAILED' if diff > args.tolerance else ''}\n")

        def encode(x):
            return model.extract_features(x, keep_seq=False, precision=args.precision)

        def clips():
            return video_clips(long, model.config.n_frames, size=size)

        n = sum(1 for _ in clips())
        runs = {"old (float32 copied, in line)": lambda c: _old_encode(encode, c, args.batch_size, device),
                "new (uint8 pinned, prefetch)": lambda c: encode_clips(encode, c, args.batch_size, device)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        outs = {}
        for k, run in runs.items():  # warm-up
            outs[k] = run(clips())
        for _ in range(args.rounds):
            for k, run in runs.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
                run(clips())
                times[k].append(time.perf_counter() - t)
        paths_diff = (lambda a, b: (a - b).abs().max().item())(*outs.values())
        failed |= paths_diff > args.tolerance
        print(f"encode_clips, {n} windows of one {args.frames}-frame video, batch {args.batch_size}, "
              f"precision {args.precision}, best of {args.rounds} (alternating):\n")
        print("| path | s | clips/s |\n|---|---|---|")
        for k, ts in times.items():
            print(f"| {k} | {min(ts):.3f} | {n / min(ts):.1f} |")
        print(f"\nmax |diff| of the two paths' features: {paths_diff:.3g} (the same inputs: 0 expected)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
