"""Face pipeline throughput: a per-stage table (decode, detect, landmarks/track, crop/resize, parse, write) and
frames/s end to end, with and without parsing, for one item at a time as ``marlin preprocess`` makes it
(``marlin.face.preprocess.process_one``: pipeline + writing the item).

Columns are busy milliseconds per frame of each stage (stages run on several threads, so they overlap and do not
add up to the wall time); ``seg`` is the segmentation model inside ``parse``. ``e2e fps`` is frames / wall seconds
of the whole item, ``fr/CPU-s`` frames per CPU-second of this process (independent of other load). The reference
measured in the same run is the straightforward path (``--ref``: the pipeline with ``overlap=False``: track all
frames, then crop and parse, then ``write_item`` encodes the crops) and plain PyAV decoding of the same file.
Run from the project root:
    python benchmarks/bench_face.py [--repeat 2] [--threads 2] [--ref] [--seg-every 2] [--dataset] [--synth N]
"""
from __future__ import annotations

import argparse
import inspect
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from marlin.data.layout import write_item  # noqa: F401  (the writer process_one uses)
from marlin.face import FacePipeline
from marlin.face import preprocess as P
from marlin.video import iter_frames, probe, read_frames, write_video

SAMPLES = Path("../shared/samples")
STAGES = ("decode", "detect", "track", "crop", "parse", "seg", "write")
HEAD = {"track": "lmk/track", "crop": "crop/rsz"}


def decode_fps(path) -> float:
    t = time.perf_counter()
    n = sum(1 for _ in iter_frames(path))
    return n / (time.perf_counter() - t)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Clock:
    """Wraps a callable and sums its wall time (thread-safe enough for a sum of floats under the GIL)."""

    def __init__(self, fn):
        self.fn, self.t = fn, 0.0

    def __call__(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return self.fn(*a, **k)
        finally:
            self.t += time.perf_counter() - t0

    def __getattr__(self, name):  # e.g. TFLiteModel.input_shape
        return getattr(self.fn, name)


def make_pipe(threads: int, parser, overlap: bool | None, seg_every: int = 1) -> tuple[FacePipeline, dict]:
    """The worker pipeline of ``marlin preprocess`` (``preprocess._init``) with clocks on the detector and the
    segmentation model. ``overlap``: None = the pipeline's default."""
    opts = P.Options(parser=parser, threads=threads, **({"seg_every": seg_every} if seg_every > 1 else {}))
    P._init(opts)
    pipe = P._PIPE
    if overlap is not None:
        if "overlap" not in inspect.signature(FacePipeline).parameters:
            raise SystemExit("this FacePipeline has no 'overlap' option (code before the speed work): drop --ref")
        pipe.overlap = overlap
    clocks = {"detect": _Clock(pipe.detector.detect)}
    pipe.detector.detect = clocks["detect"]
    segs = [p for p in getattr(pipe, "_parsers", [pipe.parser]) if p is not None and hasattr(p, "seg")]
    for p in segs:
        p.seg = _Clock(p.seg)
    clocks["seg"] = segs
    return pipe, clocks


def end_to_end(threads: int, parser, overlap, path, out: Path, seg_every: int = 1) -> tuple[float, float, dict, int]:
    """One item through ``process_one``: (wall frames/s, frames per CPU-second, ms per frame by stage, frames)."""
    _, clocks = make_pipe(threads, parser, overlap, seg_every)
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), cpu_seconds()
    r = P.process_one((str(path), "item", str(out)))
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if r["status"] != "done":
        raise SystemExit(f"{path}: {r['error']}")
    n = r["frames"]
    st = dict(r["timings"])
    st["detect"] = clocks["detect"].t
    st["track"] = st.get("track", 0.0)  # includes detect
    st["seg"] = sum(c.seg.t for c in clocks["seg"])
    st["write"] = st.get("write", 0.0) + st.pop("encode", 0.0)  # H.264 encoding (overlapped) + the rest of the item
    return n / wall, n / cpu, {k: 1000 * v / n for k, v in st.items()}, n


def table(videos, threads_list, parsers, overlaps, repeat: int, tmp: Path) -> None:
    """``parsers``: (parser, seg_every) pairs."""
    print(f"{'video':22s} {'size':>9s} {'path':>8s} {'parse':>5s} {'thr':>3s} "
          + " ".join(f"{HEAD.get(s, s):>9s}" for s in STAGES) + f" {'e2e fps':>8s} {'fr/CPU-s':>8s}")
    for v in videos:
        info = probe(v)
        for parser, k in parsers:
            for t in threads_list:
                for ov in overlaps:
                    runs = [end_to_end(t, parser, ov, v, tmp / "items", k) for _ in range(repeat)]
                    fps, cfps, st, _ = max(runs, key=lambda r: r[0])
                    name = {None: "default", True: "overlap", False: "2-pass"}[ov]
                    kind = "no" if not parser else "yes" if k == 1 else f"k={k}"
                    print(f"{v.name:22s} {info.width:>4d}x{info.height:<4d} {name:>8s} {kind:>5s} "
                          f"{t:>3d} " + " ".join(f"{st.get(s, 0):9.2f}" for s in STAGES)
                          + f" {fps:8.1f} {cfps:8.1f}   (all runs: {', '.join(f'{r[0]:.1f}' for r in runs)})",
                          flush=True)
        print(f"{'':22s} plain PyAV decoding of {v.name}: {decode_fps(v):.1f} frames/s (reference)", flush=True)


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


def dataset_runs(v480: Path, tmp: Path) -> None:
    """``preprocess`` of 4 copies of the 640x480 clip with 1 worker x 2 threads and 2 workers x 1 thread."""
    data = tmp / "data"
    data.mkdir()
    for i in range(4):
        shutil.copy(v480, data / f"c{i}.mp4")
    for workers, threads in ((1, 2), (2, 1)):
        out = tmp / f"out{workers}"
        c0 = cpu_seconds()
        s = P.preprocess(data, out, "videos", workers=workers, opts=P.Options(threads=threads), progress=False)
        cpu = cpu_seconds() - c0
        print(f"marlin preprocess, 4 x 640x480 clips, --workers {workers} --threads {threads}: {s['frames']} frames "
              f"in {s['seconds']:.1f} s = {s['frames'] / s['seconds']:.1f} frames/s, "
              f"{s['frames'] / cpu:.1f} frames per CPU-second (incl. process start-up)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2, help="runs per row; the fastest is reported, all are listed")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="pipeline threads per worker to compare")
    ap.add_argument("--videos", nargs="+", default=["video01", "video01_640x480"],
                    help="video01, video05 (../shared/samples) and/or video01_640x480 (video01 resized)")
    ap.add_argument("--ref", action="store_true",
                    help="also run the straightforward path (overlap=False) in the same run, as the reference")
    ap.add_argument("--no-parse-rows", action="store_true", help="skip the rows without parsing")
    ap.add_argument("--seg-every", type=int, nargs="*", default=[], metavar="K",
                    help="also rows with the opt-in person segmentation every K-th frame (parse column 'k=K')")
    ap.add_argument("--dataset", action="store_true", help="also run preprocess on 4 copies with 1 and 2 workers")
    ap.add_argument("--synth", type=int, default=0, metavar="N",
                    help="also measure parse agreement on N synthetic clips (needs marlin synth)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_face_"))
    try:
        v480 = tmp / "video01_640x480.mp4"
        write_video(v480, np.stack([cv2.resize(f, (640, 480)) for f in read_frames(SAMPLES / "video01.mp4")]), fps=30)
        videos = [v480 if v == "video01_640x480" else SAMPLES / f"{v}.mp4" for v in args.videos]
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
              f"ms per frame of busy time by stage, best of {args.repeat}")
        parsers = [("landmarks", 1)] + [("landmarks", k) for k in args.seg_every] \
            + ([] if args.no_parse_rows else [(None, 1)])
        overlaps = [None, False] if args.ref else [None]
        table(videos, args.threads, parsers, overlaps, args.repeat, tmp)
        if args.dataset:
            dataset_runs(v480, tmp)
        if args.synth:
            synth_parse_agreement(FacePipeline(), args.synth, tmp)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
