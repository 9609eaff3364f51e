"""Pretraining data loader: clips per second per CPU core for each way of storing the clips.

    python benchmarks/bench_loader.py [--items 6] [--clips 60] [--size 224] [--workers N] [--keep DIR]

Builds `--items` items from `--video` (default ../shared/samples/cropped01.mp4: 143 real face frames at 224
px), with a fabricated LaPa parse map so that Fasking has parts to rank, stores them as per-item folders
(clip.mp4 / frames/*.jpg) and as `marlin shard` shards (the clip as stored: H.264 bytes or JPEG members; raw
decoded uint8 frames), then times the whole per-sample pipeline (random 16-frame clip at stride 2, Fasking mask
at 224 px / 16 px patches, uint8 tensor) in ONE process with one thread (= one data-loader worker on one core), after one warm pass over
the items. Shards are read through `ShardStream` (batches of 8, shuffle buffer 16). `--workers N` also times
the shard stream through a DataLoader with N worker processes (clips/s with N cores).
The files are small enough to stay in the page cache: these are CPU costs, not disk or network throughput.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "samples" / "cropped01.mp4"
CLIP = dict(sample_rate=2, seed=0)  # besides the geometry (`geometry(size)`) and the mask


def clips_args(size: int) -> dict:
    """`PretrainClips` arguments: 16 frames at ``size`` px, 16 px patches, Fasking at 0.9."""
    from marlin.masking import MaskSpec
    from marlin.models.config import MarlinConfig

    return dict(CLIP, geometry=MarlinConfig(img_size=size, patch_size=16), mask=MaskSpec("fasking", 0.9))


def fake_parse(t: int, s: int):
    """A face-like LaPa map: skin ellipse, hair cap, brows, eyes, nose, lips (static)."""
    import cv2
    import numpy as np

    p = np.zeros((s, s), np.uint8)
    c = s // 2
    cv2.ellipse(p, (c, int(s * .55)), (int(s * .32), int(s * .42)), 0, 0, 360, 1, -1)
    cv2.ellipse(p, (c, int(s * .22)), (int(s * .34), int(s * .16)), 0, 180, 360, 10, -1)
    for side, (brow, eye) in ((-1, (2, 4)), (1, (3, 5))):
        x = c + side * int(s * .14)
        cv2.ellipse(p, (x, int(s * .38)), (int(s * .08), int(s * .02)), 0, 0, 360, brow, -1)
        cv2.ellipse(p, (x, int(s * .45)), (int(s * .06), int(s * .03)), 0, 0, 360, eye, -1)
    cv2.ellipse(p, (c, int(s * .6)), (int(s * .04), int(s * .08)), 0, 0, 360, 6, -1)
    cv2.ellipse(p, (c, int(s * .76)), (int(s * .12), int(s * .03)), 0, 0, 360, 7, -1)
    cv2.ellipse(p, (c, int(s * .81)), (int(s * .12), int(s * .03)), 0, 0, 360, 9, -1)
    return np.repeat(p[None], t, 0)


def build(root: Path, n: int, size: int, video: Path = SAMPLE) -> tuple[dict, int]:
    """Item folders (mp4, jpg) and shard folders (copy of each, raw); returns (name -> path, frames per item)."""
    import cv2

    from marlin.data.layout import write_item
    from marlin.data.shards import write_shards
    from marlin.video import read_frames

    frames = read_frames(video)
    if frames.shape[1] != size:
        frames = [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames]
    parse = fake_parse(len(frames), size)
    paths = {}
    for kind in ("mp4", "jpg"):
        d = root / f"items_{kind}"
        write_item(d / "v0", frames, {"fps": 30.0}, parse=parse, as_jpg=kind == "jpg")
        for i in range(1, n):
            shutil.copytree(d / "v0", d / f"v{i}")
        paths[f"folder {kind}"] = d
    for kind, video in (("mp4", "copy"), ("jpg", "copy"), ("mp4", "raw")):
        out = root / f"shards_{kind}_{video}"
        write_shards(paths[f"folder {kind}"], out, "1GB", img_size=size, patch_size=16, video=video,
                     progress=False)
        paths[f"shards {'raw uint8' if video == 'raw' else kind}"] = out
    return paths, len(frames)


def bytes_per_item(path: Path, n: int) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.name.endswith((".json", ".yaml"))) / n


def time_one_process(name: str, path: Path, size: int, clips: int, n: int) -> float:
    """Seconds per clip in this process (one thread), after a warm pass over every item."""
    from marlin.data.clips import PretrainClips, open_items
    from marlin.data.shards import ShardStream, shard_dataset

    kw = clips_args(size)
    if name.startswith("folder"):
        ds = PretrainClips(open_items(path), **kw)
        for p in range(n):
            ds[p]
        t = time.perf_counter()
        for p in range(n, n + clips):
            ds[p]
        return (time.perf_counter() - t) / clips
    stream = ShardStream(shard_dataset(path, **kw), 8, buffer=16)
    batches = max(1, clips // 8)
    for k in range(max(1, n // 8)):
        stream.batch(k)
    t = time.perf_counter()
    for k in range(batches):
        stream.batch(100 + k)
    return (time.perf_counter() - t) / (batches * 8)


def time_workers(path: Path, size: int, workers: int, clips: int) -> float:
    """Clips per second of the shard stream through a DataLoader with `workers` processes."""
    from torch.utils.data import DataLoader

    from marlin.data.shards import ShardStream, shard_dataset

    stream = ShardStream(shard_dataset(path, **clips_args(size)), 8, buffer=16)
    loader = DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4)
    it = iter(loader)
    for _ in range(workers * 2):  # start-up and first batches
        next(it)
    t, got = time.perf_counter(), 0
    while got < clips:
        got += len(next(it)["position"])
    return got / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=6)
    p.add_argument("--clips", type=int, default=48, help="clips timed per variant")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--workers", type=int, default=0, help="also time the shard stream with N worker processes")
    p.add_argument("--only", nargs="*", help="variants to time (default all), e.g. 'shards raw uint8'")
    p.add_argument("--keep", help="build the data here and keep it (default: a temporary folder)")
    p.add_argument("--video", type=Path, default=SAMPLE, help="face video the items are made of (default "
                   "../shared/samples/cropped01.mp4)")
    args = p.parse_args()

    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_loader_"))
    t0 = time.perf_counter()
    paths, frames = build(root, args.items, args.size, args.video)
    print(f"# {args.items} items of {args.video.name} at {args.size} px, built in "
          f"{time.perf_counter() - t0:.0f} s; one process, one thread; {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}")
    print(f"| storage | MB per item ({frames} frames) | clips/s per core | ms/clip |")
    print("|---|---|---|---|")
    for name, path in paths.items():
        if args.only and name not in args.only:
            continue
        dt = time_one_process(name, path, args.size, args.clips, args.items)
        print(f"| {name} | {bytes_per_item(path, args.items) / 1e6:.2f} | {1 / dt:.0f} | {1000 * dt:.1f} |",
              flush=True)
    if args.workers:
        for name in ("shards mp4", "shards jpg", "shards raw uint8"):
            rate = time_workers(paths[name], args.size, args.workers, max(args.clips, 16 * args.workers))
            print(f"| {name}, DataLoader with {args.workers} workers | | {rate:.0f} (all workers) | |", flush=True)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
