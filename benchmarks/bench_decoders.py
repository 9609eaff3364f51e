"""Video decoders: PyAV (the toolkit's, `marlin.video`) against torchcodec and decord on the toolkit's three
decoding workloads, frames/s and whether the frames are PyAV's, in one run.

    python benchmarks/bench_decoders.py [--repeat 3] [--clips 40] [--json OUT.json]

Workloads (the shared sample videos, ../shared/samples):
  windows  `marlin extract` on a 224 face crop (cropped01.mp4, 143 frames): the official windows (16 frames, every
           2nd, a window every 32 frames). PyAV: `marlin.extract.video_clips`, the streaming path extraction uses.
  face     the face pipeline's decode of a wild video (video01.mp4, 480x360, 300 frames): every frame in order.
           PyAV: `marlin.face.source.VideoSource.frames`.
  loader   the pretraining loader's clips (`marlin.data.clips`): `--clips` random 16-frame clips at stride 2 of an
           item's clip.mp4 (cropped01's frames written by `marlin.video.write_video`, as `marlin preprocess`
           writes items), the file opened anew per clip as a loader worker does. PyAV: `marlin.data.clips._read_frames`.

Each decoder gives the same frames (RGB uint8) for the same indices: "identical" means every byte equals PyAV's,
else the largest absolute pixel difference and how many frames differ. Times are the best of ``--repeat`` runs
after one warm run (files in the page cache), each decoder at its default threading (PyAV: frame threads for
frames of 256x256 and more, as `marlin.video.iter_frames` sets; decord: its default; torchcodec: FFmpeg's choice,
``num_ffmpeg_threads=0``). A decoder that is not installed (or does not load) is listed with the reason.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
WINDOWS = dict(clip_frames=16, sample_rate=2, stride=16)  # the official windows


# --- the decoders: (path, frame indices) -> (n, H, W, 3) uint8, and a streaming pass over every frame ---

def _decord():
    import decord

    def frames_at(path, indices):
        return decord.VideoReader(str(path)).get_batch(list(indices)).asnumpy()

    def every_frame(path):  # its sequential reader: no seek per frame
        reader = decord.VideoReader(str(path))
        while True:
            try:
                yield reader.next().asnumpy()
            except StopIteration:
                return
    return decord.__version__, frames_at, every_frame


def _torchcodec():
    import torchcodec
    from torchcodec.decoders import VideoDecoder

    def frames_at(path, indices):
        decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=0)
        return decoder.get_frames_at(list(indices)).data.numpy()

    def every_frame(path):
        decoder = VideoDecoder(str(path), dimension_order="NHWC", num_ffmpeg_threads=0)
        for i in range(len(decoder)):
            yield decoder[i].numpy()
    return torchcodec.__version__, frames_at, every_frame


OTHERS = {"decord": _decord, "torchcodec": _torchcodec}


def load_others() -> dict:
    """name -> (version, frames_at, every_frame), or name -> the reason it cannot run here."""
    out = {}
    for name, make in OTHERS.items():
        try:
            out[name] = make()
        except Exception as e:  # not installed, or a build that does not load (missing shared libraries)
            out[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
    return out


# --- the workloads: the PyAV reference (the toolkit's own code) and the same frames from another decoder ---

def windows_pyav(path):
    from marlin.extract import video_clips

    return np.stack(list(video_clips(path, size=224, **WINDOWS)))


def windows_other(path, frames_at):
    from marlin.video import count_frames
    from marlin.video.windows import clip_indices

    clips = clip_indices(count_frames(path), **WINDOWS)
    needed = sorted({i for clip in clips for i in clip})
    frames = dict(zip(needed, frames_at(path, needed)))
    return np.stack([np.stack([frames[i] for i in clip]) for clip in clips])


def face_pyav(path):
    from marlin.face.source import VideoSource

    return np.stack(list(VideoSource(path).frames()))


def face_other(path, every_frame):
    return np.stack(list(every_frame(path)))


def loader_indices(path, n: int) -> list[np.ndarray]:
    from marlin.data.clips import sample_clip_indices
    from marlin.video import count_frames

    rng = np.random.default_rng(0)
    total = count_frames(path)
    return [sample_clip_indices(total, WINDOWS["clip_frames"], WINDOWS["sample_rate"], rng) for _ in range(n)]


def loader_pyav(path, clips):
    from marlin.data.clips import _read_frames

    item = SimpleNamespace(video_path=Path(path))
    return np.stack([_read_frames(item, idx, WINDOWS["sample_rate"]) for idx in clips])


def loader_other(path, clips, frames_at):
    return np.stack([frames_at(path, idx) for idx in clips])


# --- measuring ---

def best_times(fns: dict, repeat: int) -> tuple[dict, dict]:
    """name -> (frames of the warm run, best of ``repeat`` timed runs). The runs alternate between the decoders,
    round by round, so that a busy machine slows them alike; a decoder that raises gets its error instead."""
    out, times = {}, {}
    for name, fn in fns.items():
        try:
            out[name] = fn()  # the warm run: page cache, decoder libraries; its frames are the ones compared
        except Exception as e:
            out[name] = e
    for _ in range(repeat):
        for name, fn in fns.items():
            if not isinstance(out[name], Exception):
                t = time.perf_counter()
                fn()
                times[name] = min(times.get(name, float("inf")), time.perf_counter() - t)
    return out, times


def compare(ref: np.ndarray, got: np.ndarray) -> str:
    if got.shape != ref.shape:
        return f"shape {tuple(got.shape)} vs PyAV {tuple(ref.shape)}"
    if np.array_equal(got, ref):
        return "identical"
    diff = np.abs(got.astype(np.int16) - ref.astype(np.int16))
    frames = diff.reshape(-1, *ref.shape[-3:]).max(axis=(1, 2, 3))
    return f"max |diff| {int(diff.max())}, {int((frames > 0).sum())} of {len(frames)} frames differ"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per decoder and workload (best kept)")
    ap.add_argument("--clips", type=int, default=40, help="loader workload: random clips")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)

    import av

    from marlin.video import read_frames, write_video

    others = load_others()
    print(f"PyAV {av.__version__} (reference); "
          + "; ".join(f"{n} {v[0]}" if isinstance(v, tuple) else f"{n}: not available ({v})"
                      for n, v in others.items()))
    with tempfile.TemporaryDirectory() as tmp:
        item_video = Path(tmp) / "item" / "clip.mp4"  # an item's clip.mp4 as `marlin preprocess` writes it
        write_video(item_video, read_frames(SAMPLES / "cropped01.mp4"))
        clips = loader_indices(item_video, args.clips)
        workloads = [
            ("windows (cropped01, 224)", SAMPLES / "cropped01.mp4", windows_pyav,
             lambda p, d: windows_other(p, d[1])),
            ("face (video01, 480x360)", SAMPLES / "video01.mp4", face_pyav, lambda p, d: face_other(p, d[2])),
            (f"loader ({args.clips} clips, 224 item)", item_video, lambda p: loader_pyav(p, clips),
             lambda p, d: loader_other(p, clips, d[1])),
        ]
        rows = []
        for label, path, pyav, other in workloads:
            ready = {name: dec for name, dec in others.items() if isinstance(dec, tuple)}
            fns = {"PyAV": lambda: pyav(path)} | {name: (lambda d=dec: other(path, d)) for name, dec in ready.items()}
            got, times = best_times(fns, args.repeat)
            if isinstance(got["PyAV"], Exception):
                raise got["PyAV"]  # the reference must decode
            ref, t_ref = got["PyAV"], times["PyAV"]
            n = int(np.prod(ref.shape[:-3]))
            for name in ["PyAV", *others]:
                row = dict(workload=label, decoder=name, frames=n, seconds=None, fps=None, speedup=None)
                if name not in got:
                    row["frames_vs_pyav"] = "not available"
                elif isinstance(got[name], Exception):
                    row["frames_vs_pyav"] = f"failed: {type(got[name]).__name__}: {got[name]}"[:120]
                else:
                    t = times[name]
                    row.update(seconds=t, fps=n / t, speedup=t_ref / t,
                               frames_vs_pyav="reference" if name == "PyAV" else compare(ref, got[name]))
                rows.append(row)
    print("\n| workload | decoder | frames | s (best of %d) | frames/s | vs PyAV | frames vs PyAV |" % args.repeat)
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        timing = (f"{r['seconds']:.3f} | {r['fps']:.0f} | {r['speedup']:.2f}x" if r["seconds"] is not None
                  else "- | - | -")
        print(f"| {r['workload']} | {r['decoder']} | {r['frames']} | {timing} | {r['frames_vs_pyav']} |")
    if args.json:
        args.json.write_text(json.dumps({"pyav": av.__version__, "others": {
            n: (v[0] if isinstance(v, tuple) else f"not available: {v}") for n, v in others.items()},
            "repeat": args.repeat, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
