"""Video decoding and encoding with PyAV.

Frames are RGB uint8 arrays of shape (H, W, 3). Every failure raises :class:`VideoError`,
which names the file and the problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class VideoError(RuntimeError):
    """A video could not be read or written. The message names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class TruncatedVideoError(VideoError):
    """The stream ended before the number of frames its container declares (a file cut short)."""

    def __init__(self, path, decoded: int, declared: int):
        self.decoded, self.declared = decoded, declared
        super().__init__(path, f"the stream ended after {decoded} frames although the container declares "
                               f"{declared}: the file is truncated or corrupt")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    num_frames: int  # from the container; 0 when the container does not say
    rotation: int  # degrees, counter-clockwise, from the stream's display matrix


def _open(path):
    import av

    if hasattr(path, "read"):  # an in-memory video (a shard member, io.BytesIO)
        try:
            container = av.open(path)
        except Exception as e:
            raise VideoError(getattr(path, "name", "<in-memory video>"), f"not a readable video ({e})") from None
        return container
    p = Path(path)
    if not p.exists():
        raise VideoError(p, "file does not exist")
    if p.is_dir():
        raise VideoError(p, "is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoError(p, "file is empty")
    try:
        container = av.open(str(p))
    except Exception as e:  # av raises many types (InvalidDataError, ValueError, ...)
        raise VideoError(p, f"not a readable video ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(p, "contains no video stream")
    return container


def _rotation(stream) -> int:
    """Rotation in degrees from side data / metadata (0, 90, 180, 270)."""
    rot = 0
    try:
        meta = stream.metadata or {}
        if "rotate" in meta:
            rot = -int(float(meta["rotate"]))
    except Exception:
        pass
    return rot % 360


def probe(path) -> VideoInfo:
    """Container-level information without decoding."""
    with _open(path) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or s.guessed_rate or 0) or 25.0
        return VideoInfo(str(path), s.codec_context.width, s.codec_context.height, fps, int(s.frames or 0), _rotation(s))


def _apply_rotation(img: np.ndarray, degrees: int) -> np.ndarray:
    k = (degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


def iter_frames(path, start: int = 0, step: int = 1) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3) in decoding order, honouring rotation metadata.

    ``start``/``step`` select frames ``start, start+step, ...`` by their order in the stream
    (variable frame rate is handled by order, not by timestamps).
    """
    from av.video.reformatter import VideoReformatter

    container = _open(path)
    index = 0
    to_rgb = VideoReformatter()  # one conversion context for the whole video: a frame's own is rebuilt per frame
    try:
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height >= 256 * 256:
            stream.thread_type = "AUTO"  # frame threads pay off for large frames; small clips decode faster alone
        rot = _rotation(stream)
        try:
            for frame in container.decode(stream):
                if index >= start and (index - start) % step == 0:
                    r = rot
                    fr = getattr(frame, "rotation", None)  # PyAV >= 13: display-matrix rotation
                    if fr:
                        r = int(fr) % 360
                    yield _apply_rotation(to_rgb.reformat(frame, format="rgb24").to_ndarray(), r)
                index += 1
        except VideoError:
            raise
        except GeneratorExit:
            raise
        except Exception as e:
            if index == 0:
                raise VideoError(path, f"could not decode any frame ({type(e).__name__}: {e})") from None
            raise VideoError(path, f"decoding failed after frame {index}: the file is truncated or corrupt "
                                   f"({type(e).__name__}: {e})") from None
        if index == 0:
            raise VideoError(path, "contains no decodable frames")
    finally:
        container.close()


def read_frames(path, indices: Sequence[int] | None = None) -> np.ndarray:
    """Decode a whole video (or only ``indices``) into a (T, H, W, 3) uint8 array."""
    frames = []
    wanted = None if indices is None else set(int(i) for i in indices)
    last = None if indices is None else max(indices, default=-1)
    for i, f in enumerate(iter_frames(path)):
        if wanted is None or i in wanted:
            frames.append(f)
        if last is not None and i >= last:
            break
    if not frames:
        raise VideoError(path, "no frames at the requested indices")
    if indices is not None:
        lookup = {i: f for i, f in zip(sorted(wanted), frames)}
        return np.stack([lookup[i] for i in indices if i in lookup])
    return np.stack(frames)


def count_frames(path) -> int:
    """Number of frames: the container's count when it records one, otherwise counted by demuxing."""
    info = probe(path)
    if info.num_frames > 0:
        return info.num_frames
    with _open(path) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size > 0)


def write_video(path, frames, fps: float = 25.0, crf: int = 18, codec: str = "libx264",
                preset: str = "medium") -> None:
    """Encode frames (iterable of (H, W, 3) uint8 RGB) to an H.264 mp4, atomically. ``preset``: the libx264
    speed preset (the synthetic world uses "ultrafast": several times faster to encode and decode).

    The file appears under ``path`` only once it is complete.
    """
    import av

    from ..atomic import atomic_path

    path = Path(path)
    n = 0
    with atomic_path(path) as tmp:
        options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
        with av.open(str(tmp), mode="w", options=options) as c:
            stream = None
            for f in frames:
                f = np.ascontiguousarray(f, dtype=np.uint8)
                if stream is None:
                    h, w = f.shape[:2]
                    stream = c.add_stream(codec, rate=_fraction(fps))
                    stream.width, stream.height = w + (w % 2), h + (h % 2)
                    stream.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        # mbtree off: with it this libx264 build gives a different bitstream for the same frames on
                        # some runs (measured), and a regenerated synthetic world would not be the same bytes
                        stream.options = {"crf": str(crf), "preset": preset, "x264-params": "mbtree=0"}
                if f.shape[0] != stream.height or f.shape[1] != stream.width:
                    f = np.pad(f, ((0, stream.height - f.shape[0]), (0, stream.width - f.shape[1]), (0, 0)))
                for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(packet)
                n += 1
            if stream is None:
                raise VideoError(path, "no frames to write")
            for packet in stream.encode():
                c.mux(packet)


def _fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def _videos_of(item: Path) -> tuple[list[Path], list[Path]]:
    """The videos of one input and the folders their names are relative to: a folder's videos (recursive), the
    entries of a ``.txt`` list (relative lines: relative to the list's folder), or the file itself."""
    if item.is_dir():
        return [f for f in sorted(item.rglob("*")) if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS], [item]
    if item.suffix.lower() == ".txt" and item.is_file():
        files, anchors = [], []
        for line in item.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                q = Path(line)
                files.append(q if q.is_absolute() else item.parent / q)
                anchors.append(q.parent if q.is_absolute() else item.parent)
        return files, anchors
    return [item], [item.parent]


def _expand(inputs) -> list[tuple[Path, list[Path], list[Path]]]:
    return [(Path(i), *_videos_of(Path(i))) for i in inputs]


def _relative(expanded) -> list[tuple[Path, Path]]:
    """(video, path relative to the common folder of all inputs) for the videos of ``_expand``."""
    files = [f for _, fs, _ in expanded for f in fs]
    if not files:
        return []
    anchors = [a for _, _, anchors in expanded for a in anchors] + [f.parent for f in files]
    root = os.path.commonpath([os.path.abspath(a) for a in anchors])
    return [(f, Path(os.path.relpath(os.path.abspath(f), root))) for f in files]


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, Path]]:
    """Expand files, directories (recursive) and text files listing paths into (video, relative name) pairs.

    Relative names mirror the input tree below the common folder of all inputs: the files below a single
    directory keep their structure below it, a single file (or several in one folder) is named by its file name,
    ``dirA/x.mp4`` and ``dirB/x.mp4`` become ``dirA/x.mp4`` and ``dirB/x.mp4``.
    """
    return _relative(_expand(inputs))


def video_names(inputs: Sequence[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(video, output name) for every video of ``inputs`` (see :func:`find_videos`), one name per video.

    The name is the relative path without extension; where names differ only by extension (``a.avi``,
    ``a.mp4``), the first in name order keeps the plain name and the others add their extension (``a``,
    ``a_mp4``). A video given twice counts once. Raises :class:`~marlin.errors.MarlinError` for an input that
    does not exist, a folder or list without videos, or two videos that would still share a name.
    """
    from ..errors import MarlinError

    expanded = _expand(inputs)
    for item, files, _ in expanded:
        if not item.exists():
            raise MarlinError(f"{item}: input does not exist")
        if not files:
            what = "folder" if item.is_dir() else "list"
            exts = "/".join(e.lstrip(".") for e in VIDEO_EXTENSIONS)
            raise MarlinError(f"{item}: this {what} contains no video files ({exts})")
    pairs, seen = [], set()
    for f, rel in _relative(expanded):
        key = os.path.realpath(f)
        if key not in seen:
            seen.add(key)
            pairs.append((f, rel))
    stems: dict[str, list[Path]] = {}
    for _, rel in pairs:
        stems.setdefault(rel.with_suffix("").as_posix(), []).append(rel)
    names, owner = [], {}
    for f, rel in pairs:
        name = rel.with_suffix("").as_posix()
        if min(stems[name], key=Path.as_posix) != rel:
            name = f"{name}_{rel.suffix.lstrip('.').lower()}"
        if name in owner:
            raise MarlinError(f"{owner[name]} and {f} would both be written as {name!r}: rename one of them")
        owner[name] = f
        names.append((f, name))
    return names


def output_dir(path) -> Path:
    """Create the output folder ``path`` if needed and check that files can be written into it; raises
    :class:`~marlin.errors.MarlinError` naming the folder when it is a file or not writable."""
    import tempfile

    from ..errors import MarlinError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MarlinError(f"{path}: the output folder is a file; give a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe_file = tempfile.mkstemp(prefix=".marlin-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe_file)
    except OSError as e:
        raise MarlinError(f"{path}: cannot write into the output folder ({e.strerror or e})") from None
    return path
