"""Reading model-sized clips from any sample source: a video file, a directory of frames, or a segment of a
video (cut once into a cache); the official windows for evaluation, a random window for training."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..extract import video_clips
from ..video import TruncatedVideoError, VideoError, count_frames, iter_frames, probe, read_frames, write_video
from ..video.windows import clip_indices
from .datasets.base import IMAGE_EXTENSIONS, Sample


def frame_files(folder: Path) -> list[Path]:
    files = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise VideoError(folder, "directory holds no frames (.jpg / .png)")
    return files


def _read_images(files: list[Path], size: int) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB; frames of another size are resized (frame folders only)."""
    import cv2

    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise VideoError(f, "not a readable image")
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    return np.stack(out)


def materialize(sample: Sample, cache_dir: Path | None) -> Path:
    """The readable source of a sample: the segment [start, end) s of its video is cut once to
    ``cache_dir/.segments/<key>.<digest of source, start, end>.mp4`` (atomic); other samples are returned as
    they are."""
    if sample.start is None:
        return sample.source
    if cache_dir is None:
        raise ValueError(f"{sample.source}: a segment sample needs a cache directory to cut it into")
    # named by what the segment is cut from, so another root or segment table never reuses it
    origin = f"{Path(sample.source).resolve()}|{sample.start:.6f}|{sample.end:.6f}"
    dest = Path(cache_dir) / ".segments" / f"{sample.key}.{hashlib.sha256(origin.encode()).hexdigest()[:12]}.mp4"
    if dest.is_file():
        return dest
    fps = probe(sample.source).fps
    first, last = int(round(sample.start * fps)), int(round(sample.end * fps))
    frames = []
    for i, f in enumerate(iter_frames(sample.source)):
        if i >= last:
            break
        if i >= first:
            frames.append(f)
    if not frames:
        raise VideoError(sample.source, f"segment {sample.start:.2f}-{sample.end:.2f} s holds no frames")
    write_video(dest, frames, fps=fps)
    return dest


def eval_clips(source: Path, clip_frames: int, size: int, sample_rate: int = 2, stride: int = 16,
               crop_face: bool = False) -> Iterator[np.ndarray]:
    """All official windows (L, S, S, 3) uint8 of a video file or frame directory."""
    source = Path(source)
    if not source.is_dir():
        yield from video_clips(source, clip_frames, sample_rate, stride, False, crop_face, size)
        return
    files = frame_files(source)
    for idx in clip_indices(len(files), clip_frames, sample_rate, stride):
        yield _read_images([files[i] for i in idx], size)


def random_clip(source: Path, clip_frames: int, size: int, rng: np.random.Generator,
                sample_rate: int = 2) -> np.ndarray:
    """One clip (L, S, S, 3) uint8 at a random official window start (every ``sample_rate`` frames)."""
    source = Path(source)
    files = frame_files(source) if source.is_dir() else None
    total = len(files) if files is not None else count_frames(source)
    windows = clip_indices(total, clip_frames, sample_rate, stride=1)
    if not windows:
        raise VideoError(source, "no frames")
    idx = windows[int(rng.integers(len(windows)))]
    if files is not None:
        return _read_images([files[i] for i in idx], size)
    frames = read_frames(source, idx)
    if len(frames) < clip_frames:  # the stream ends before its declared count: refused, as extraction does
        raise TruncatedVideoError(source, sum(1 for _ in iter_frames(source)), total)
    if frames.shape[1:3] != (size, size):
        raise VideoError(source, f"frames are {frames.shape[2]}x{frames.shape[1]} but the model expects "
                                 f"{size}x{size} face crops: run `marlin preprocess` first")
    return frames
