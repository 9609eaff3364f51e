"""Face pipeline throughput: frames/s end to end (decode -> track -> crop -> parse -> write) with the
time per stage, on the sample videos and a 640x480 version of video01, plus a 2-worker dataset run.

The reference printed alongside is plain PyAV decoding of the same file, measured in the same run.
Wall-clock frames/s depend on what else runs on the machine; frames per CPU-second do not.
Run from the project root:  python benchmarks/bench_face.py [--repeat 2] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from marlin.data.layout import write_item
from marlin.face import FacePipeline
from marlin.face.preprocess import Options, preprocess
from marlin.video import iter_frames, probe, read_frames, write_video

SAMPLES = Path("../shared/samples")
STAGES = ("decode", "track", "crop", "parse", "write")


def decode_fps(path) -> float:
    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(path))
    return n / (time.perf_counter() - t)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def end_to_end(pipe: FacePipeline, path, tmp: Path) -> tuple[float, float, dict, int]:
    """(wall frames/s, frames per CPU-second, ms per frame by stage, frames)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    clip = pipe.run(path)
    t1 = time.perf_counter()
    write_item(tmp / Path(path).stem, clip.frames, clip.meta, clip.parse, clip.landmarks)
    t2 = time.perf_counter()
    n = len(clip.frames)
    stages = {**pipe.timings, "write": t2 - t1}
    return n / (t2 - t0), n / (cpu_seconds() - c0), {k: 1000 * v / n for k, v in stages.items()}, n


def synth_parse_agreement(pipe: FacePipeline, n: int, tmp: Path) -> None:
    """Per-class IoU of our parse maps against the synthetic world's ground truth (``marlin synth
    --raw-videos``): our maps are sampled at the ground-truth crop's pixels through the two boxes."""
    from marlin.cli import main as cli
    from marlin.data.layout import PARSE_CLASSES, load_item

    root = tmp / "synth"
    cli(["synth", str(root), "--num", str(n), "--frames", "16", "--size", "224", "--raw-videos", "--no-progress"])
    inter, union, frames = np.zeros(11), np.zeros(11), 0
    for k in range(n):
        item = load_item(root / f"synth_{k:06d}")
        clip = pipe.run(root / "raw" / f"synth_{k:06d}.mp4")
        gt = item.read_parse()  # (T, S, S)
        size = gt.shape[1]
        centres = np.mgrid[0:size, 0:size][::-1] + 0.5  # (2, S, S) x, y of ground-truth pixels
        for t, (g, box) in enumerate(zip(gt, np.asarray(item.meta["boxes"]))):
            if not clip.found[t]:
                continue
            src = box[:2, None, None] + centres * (box[2] - box[0]) / size  # source pixels
            ob = clip.boxes[t]
            uv = ((src - ob[:2, None, None]) * pipe.size / (ob[2] - ob[0])).astype(int)
            inside = (uv >= 0).all(0) & (uv < pipe.size).all(0)
            ours = np.zeros_like(g)
            ours[inside] = clip.parse[t][uv[1][inside], uv[0][inside]]
            for c in range(11):
                inter[c] += ((ours == c) & (g == c)).sum()
                union[c] += ((ours == c) | (g == c)).sum()
            frames += 1
    iou = inter / np.maximum(union, 1)
    print(f"parse agreement with the synthetic world's ground truth ({n} clips, {frames} frames with a face):")
    print("  " + "  ".join(f"{name} {v:.2f}" for name, v in zip(PARSE_CLASSES, iou)) + f"  mIoU {iou.mean():.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="runs per video; the best is reported")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="pipeline threads to compare (background decoding + parallel parsing)")
    ap.add_argument("--synth", type=int, default=0, metavar="N",
                    help="also measure parse agreement on N synthetic clips (needs marlin synth)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_face_"))
    try:
        v480 = tmp / "video01_640x480.mp4"
        write_video(v480, np.stack([cv2.resize(f, (640, 480)) for f in read_frames(SAMPLES / "video01.mp4")]), fps=30)
        videos = [SAMPLES / "video01.mp4", SAMPLES / "video05.mp4", v480]
        print(f"one process; ms per frame by stage (busy time; with threads > 1 stages overlap); "
              f"best of {args.repeat}")
        print(f"{'video':24s} {'size':>9s} {'thr':>3s} {'frames':>6s} " + " ".join(f"{s:>7s}" for s in STAGES)
              + f" {'e2e fps':>8s} {'fr/CPU-s':>8s} {'decode-only fps (ref)':>22s}")
        pipes = {t: FacePipeline(threads=t) for t in args.threads}
        for v in videos:
            info = probe(v)
            for t, pipe in pipes.items():
                fps, cfps, st, n = max((end_to_end(pipe, v, tmp / "items") for _ in range(args.repeat)),
                                       key=lambda r: r[0])
                ref = decode_fps(v)
                print(f"{v.name:24s} {info.width:>4d}x{info.height:<4d} {t:>3d} {n:>6d} "
                      + " ".join(f"{st.get(s, 0):7.2f}" for s in STAGES) + f" {fps:8.1f} {cfps:8.1f} {ref:22.1f}")
        # dataset run: 4 copies of the 480p clip, 2 worker processes (one per core)
        data = tmp / "data"
        data.mkdir()
        for i in range(4):
            shutil.copy(v480, data / f"c{i}.mp4")
        for workers, threads in ((1, 2), (2, 1)):
            out = tmp / f"out{workers}"
            c0 = cpu_seconds()
            s = preprocess(data, out, "videos", workers=workers, opts=Options(threads=threads), progress=False)
            cpu = cpu_seconds() - c0
            print(f"marlin preprocess, 4 x 640x480 clips, --workers {workers} --threads {threads}: {s['frames']} frames "
                  f"in {s['seconds']:.1f} s = {s['frames'] / s['seconds']:.1f} frames/s, "
                  f"{s['frames'] / cpu:.1f} frames per CPU-second (incl. process start-up)")
        print("frames per CPU-second does not depend on other load; on 2 idle cores with 2 workers the "
              "throughput approaches twice that figure.")
        if args.synth:
            synth_parse_agreement(pipes[min(pipes)], args.synth, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
