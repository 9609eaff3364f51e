"""Feature extraction from videos: streaming official windows through the encoder in batches."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .precision import Precision
from .video import TruncatedVideoError, VideoError, count_frames, iter_frames
from .video.windows import clip_indices, iter_clips


def video_clips(path, clip_frames: int = 16, sample_rate: int = 2, stride: int = 16, cover_tail: bool = False,
                crop_face: bool = False, size: int = 224) -> Iterator[np.ndarray]:
    """Clips (L, S, S, 3) uint8 of a video with the official windows; decoded as a stream unless cropping.

    A stream that ends before the frames its windows need (a short video: before its declared frame count)
    raises :class:`TruncatedVideoError`; with ``crop_face`` the face pipeline refuses any video that ends before
    its declared frame count."""
    if crop_face:
        from .face import crop_faces

        frames = crop_faces(path, size=size)
        total, source = len(frames), iter(frames)
    else:
        total, source = count_frames(path), iter_frames(path)
    clips = clip_indices(total, clip_frames, sample_rate, stride, cover_tail)
    if total <= clip_frames * sample_rate and not crop_face:
        # Short videos: decoded whole (as the official reader does), windows from the frames that decode
        frames = list(source)
        if len(frames) < total:  # a short file cut shorter still: as the face path, not padded silently
            raise TruncatedVideoError(path, len(frames), total)
        clips = clip_indices(len(frames), clip_frames, sample_rate, stride, cover_tail)
        source = iter(frames)
    decoded = 0

    def counted(frames):
        nonlocal decoded
        for f in frames:
            decoded += 1
            yield f

    n = 0
    for clip in iter_clips(counted(source), clips):
        if clip.shape[1:3] != (size, size):
            raise VideoError(path, f"frames are {clip.shape[2]}x{clip.shape[1]} but the model expects {size}x{size} "
                                   f"face crops: use crop_face=True (--crop-face) or `marlin preprocess` first")
        n += 1
        yield clip
    if n < len(clips):
        raise TruncatedVideoError(path, decoded, total)


def face_track_clips(path, clip_frames: int = 16, sample_rate: int = 2, stride: int = 16, cover_tail: bool = False,
                     size: int = 224, min_track_frames: int = 16) -> list[tuple[str, Iterator[np.ndarray]]]:
    """Every face of a video (``--faces all``): for each kept face track, its name ("face0", "face1", ...: by
    first frame, then left to right, see :mod:`marlin.face.tracks`) and its clips (L, S, S, 3) uint8 with the
    windows of :func:`video_clips` over the track's own frames. The face pipeline runs first (all tracks at
    once); a video without a face track of ``min_track_frames`` frames raises ``marlin.face.NoFaceError`` naming
    the file. Per-track metadata (track number, source frame range, boxes): ``marlin.face.face_tracks``."""
    from .face import face_tracks

    return [(f"face{clip.meta['track']}",
             iter_clips(iter(clip.frames), clip_indices(len(clip.frames), clip_frames, sample_rate, stride, cover_tail)))
            for clip in face_tracks(path, size=size, min_track_frames=min_track_frames)]


FEATURES_RECORD = "features.json"


def features_record(encoder: dict, sample_rate: int, stride: int, crop_face: bool, keep_seq: bool = False,
                    reduction: str = "none", cover_tail: bool = False, precision: Precision = Precision.FP32,
                    faces: str = "one",
                    backend: str = "torch", device=None) -> dict:
    """Everything that determines a folder of per-video features; written beside them as features.json and
    compared on reuse (`marlin extract` and the downstream feature cache). ``encoder``: an encoder's identity
    (`marlin.models.config.encoder_record` of a file, `model_record` of a model in memory); ``precision``: the
    resolved one, recorded by name ("32", "bf16" or "16"), never "auto", which means different things on
    different machines.
    With ``crop_face`` the record's ``face`` names the crops' detector, landmark model and crop rule
    (`marlin.face.pipeline.crop_identity`).
    ``faces``: "all" for per-track features (``DIR/<name>/face<k>.npy``), recorded as ``faces: all``; a record
    without the key is "one". ``backend``: what ran the encoder (torch, onnxruntime, openvino: `marlin.deploy`).
    ``device``: where it ran, recorded as ``devices`` (`device_label`), provenance that is not compared on reuse
    (`PROVENANCE`): float32 features of a CPU and a GPU agree to rounding (no TF32 at "32", see
    `marlin.precision.Precision.autocast`), so a folder begun on one machine is completed on another, and every
    device that wrote into it is listed (`claim_output`)."""
    if backend not in ("torch", "onnxruntime", "openvino"):
        raise ValueError(f"backend must be torch, onnxruntime or openvino, got {backend!r}")
    return {"format": "marlin-features/1", "encoder": encoder,
            "windows": {"sample_rate": int(sample_rate), "stride": int(stride), "cover_tail": bool(cover_tail)},
            "crop_face": bool(crop_face), **({"face": _crop_identity()} if crop_face else {}),
            "keep_seq": bool(keep_seq), "reduction": reduction,
            "precision": precision.name, **({"faces": "all"} if faces == "all" else {}), "backend": backend,
            **({"devices": [device_label(device)]} if device is not None else {})}


def _crop_identity() -> dict:
    from .face.pipeline import crop_identity  # the face extra: a run that crops faces needs it anyway

    return crop_identity()


PROVENANCE = ("devices",)  # record keys that say how features were made without changing what they are


def device_label(device) -> str:
    """A feature record's name of a device: "cpu", or "cuda (<GPU name>)"."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def merge_provenance(path: Path, found: dict, record: dict) -> None:
    """Rewrite the record ``found`` at ``path`` with the devices of ``record`` it does not list yet (a folder
    completed on another machine lists both); nothing is written when it lists them all."""
    from .atomic import write_json

    devices = list(found.get("devices", []))
    new = [d for d in record.get("devices", []) if d not in devices]
    if new:
        write_json(path, {**found, "devices": devices + new})


def record_differences(found: dict, expected: dict) -> list[str]:
    """What differs between a features.json record ``found`` and the record a run ``expected`` ("key: cached X,
    needed Y"). Sections (top-level keys) the found record does not hold are not compared (a `marlin extract`
    output has no dataset root), except the identifying ones; inside a section both hold, every key is (a key
    on one side only differs). A record from before precision (backend) was recorded counts as float32 (torch),
    the only one there was; one without ``faces`` as "one"; a `crop_face` one without ``face`` as cropped by the
    pipeline of that time (`marlin.face.pipeline.LEGACY_CROP_IDENTITY`)."""
    from .config import flatten

    if found.get("crop_face") and "face" not in found and expected.get("crop_face"):
        from .face.pipeline import LEGACY_CROP_IDENTITY

        found = {**found, "face": LEGACY_CROP_IDENTITY}
    found = {"precision": "32", "faces": "one", "backend": "torch", **found}
    expected = {"faces": "one", **expected}
    found, expected = ({k: v for k, v in r.items() if k not in PROVENANCE} for r in (found, expected))
    have, want = flatten(found), flatten(expected)
    keys = sorted(k for k in set(have) | set(want) if k.split(".")[0] in found and k.split(".")[0] in expected)
    diff = [f"{k}: cached {have.get(k, '<none>')!r}, needed {want.get(k, '<none>')!r}" for k in keys
            if have.get(k, "<none>") != want.get(k, "<none>")]
    return diff + [f"{k}: missing from the record" for k in ("encoder.weights_sha256", "windows.sample_rate",
                                                             "windows.stride", "crop_face")
                   if k in want and k not in have]


def claim_output(out_dir: Path, record: dict, record_name: str | None = None, outputs: str = "*.npy",
                 what: str = "features") -> None:
    """Write ``record`` as OUT/<record_name> (default features.json), or check the one there: a folder whose
    outputs were made with other settings (or hold no record) is refused, so one folder never mixes encoders,
    windows or precisions. ``outputs``: the glob of the files the record speaks for."""
    import json

    from .atomic import write_json
    from .errors import MarlinError

    record_name = record_name or FEATURES_RECORD
    path = out_dir / record_name
    if path.is_file():
        try:
            found = json.loads(path.read_text())
            diff = record_differences(found, record)
        except ValueError as e:
            raise MarlinError(f"{path}: unreadable {what} record ({e})") from None
        if diff:
            raise MarlinError(f"{out_dir}: holds {what} made with other settings ({'; '.join(diff)}): "
                              f"use another --out, or delete that folder")
        merge_provenance(path, found, record)
        return
    if any(out_dir.rglob(outputs)):
        raise MarlinError(f"{out_dir}: holds {what} without a {record_name} record, so nothing tells what "
                          f"made them: use another --out, or delete them")
    write_json(path, record)


def clips_to_tensor(clips: list[np.ndarray] | np.ndarray | Tensor, device=None) -> Tensor:
    """(B, L, H, W, 3) uint8 -> (B, 3, L, H, W) float32 in [0, 1] on ``device`` (default: the CPU). To a CUDA
    device the clips travel as uint8 (a quarter of float32's bytes) from pinned memory, asynchronously, and are
    converted there: the same values as converting on the CPU (x / 255 rounds alike on both)."""
    if isinstance(clips, Tensor):  # e.g. a batch `encode_clips` stacked into pinned memory
        x = clips
    else:
        x = torch.from_numpy(np.ascontiguousarray(np.stack(clips) if isinstance(clips, list) else clips))
    if device is not None and torch.device(device).type == "cuda":
        x = (x if x.is_pinned() else x.pin_memory()).to(device, non_blocking=True)
    return x.permute(0, 4, 1, 2, 3).float().div_(255)


def prefetch(items: Iterable, depth: int = 2) -> Iterator:
    """``items`` made by a background thread up to ``depth`` ahead, so that decoding (PyAV releases the GIL)
    overlaps the GPU's work; the order is kept, an exception raised making them is raised here, and a consumer
    that stops early stops (and closes) the producer."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    stop, end = threading.Event(), object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        it = iter(items)
        try:
            for item in it:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((end, e))
        finally:
            if hasattr(it, "close"):
                it.close()

    worker = threading.Thread(target=produce, name="marlin-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = q.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        worker.join()


def _clip_batches(clips: Iterable[np.ndarray], batch_size: int, pin: bool = False) -> Iterator:
    """Clips (L, H, W, 3) uint8 in lists of ``batch_size``, or with ``pin`` stacked into pinned (B, L, H, W, 3)."""
    def done(batch):
        return torch.from_numpy(np.stack(batch)).pin_memory() if pin else batch

    batch = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == batch_size:
            yield done(batch)
            batch = []
    if batch:
        yield done(batch)


@torch.no_grad()
def encode_clips(encode: Callable[[Tensor], Tensor], clips: Iterable[np.ndarray], batch_size: int = 8,
                 device=None) -> Tensor:
    """Run ``encode`` ((B, 3, L, H, W) float in [0, 1] -> (B, ...)) over clips (L, H, W, 3) uint8 in batches of
    ``batch_size``, the clips consumed as a stream; returns (n_clips, ...) float32 on the CPU.

    ``device``: where ``encode`` runs. For a CUDA device a background thread decodes and stacks the next batches
    into pinned memory while the GPU works (`prefetch`), and batches travel as uint8 (`clips_to_tensor`); other
    devices get the batches in this thread, as they come.

    The one clip-batching loop of the toolkit: extraction, the feature cache, the demo and fine-tuning evaluation."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cuda = device is not None and torch.device(device).type == "cuda"
    batches = _clip_batches(clips, batch_size, pin=cuda)
    if cuda:
        batches = prefetch(batches)
    out = [encode(clips_to_tensor(batch, device)).float().cpu() for batch in batches]
    if not out:
        raise ValueError("no clips to encode")
    return torch.cat(out)


CPU_TOKENS_PER_CALL = 1568  # one 224 px clip of the presets: 8 x 14 x 14 tokens
GPU_CLIPS_PER_CALL = 8


def clips_per_call(config, device, batch_size: int | None = None) -> int:
    """Clips per encoder call: ``batch_size`` when given, else by where the encoder runs. A GPU takes 8. A CPU
    (torch, onnxruntime and OpenVINO all run there) takes as many clips as hold about 1568 tokens, at most 8: one
    clip of the presets, 8 of the 128-token demo model. Measured in docs/performance.md: at 1568 tokens a clip
    already fills the cores and batch 1 is 1.1-1.4x faster per clip than 8 on both CPUs measured, while at 128
    tokens batch 8 is 1.4x faster than 1."""
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return batch_size
    if device is not None and torch.device(device).type == "cuda":
        return GPU_CLIPS_PER_CALL
    return max(1, min(GPU_CLIPS_PER_CALL, CPU_TOKENS_PER_CALL // config.num_tokens))


@torch.no_grad()
def video_features(model, path, crop_face: bool = False, sample_rate: int = 2, stride: int = 16,
                   reduction: str = "none", keep_seq: bool = False, cover_tail: bool = False,
                   batch_size: int | None = None, precision: Precision = Precision.FP32,
                   backend: str = "torch") -> Tensor:
    """(n_clips, D) float32 features of a video ((n_clips, N, D) with keep_seq); `reduction` mean/max over
    clips; ``batch_size``: clips per encoder call (`clips_per_call` when None); ``precision``: resolved for the
    model's device and ``backend`` (`Precision.resolve`); ``backend`` torch | onnxruntime | openvino (see
    `backend_model`)."""
    if reduction not in ("none", "mean", "max"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'max', got {reduction!r}")
    model = backend_model(model, backend, precision)  # once, before any decoding
    model.eval()
    cfg = model.config
    clips = video_clips(path, cfg.n_frames, sample_rate, stride, cover_tail, crop_face, cfg.img_size)
    return _encode_reduce(model, clips, reduction, keep_seq, batch_size, precision)


@torch.no_grad()
def face_track_features(model, path, sample_rate: int = 2, stride: int = 16, reduction: str = "none",
                        keep_seq: bool = False, cover_tail: bool = False, batch_size: int | None = None,
                        precision: Precision = Precision.FP32, min_track_frames: int = 16,
                        backend: str = "torch") -> list[tuple[str, Tensor]]:
    """:func:`video_features` of every face track of a video (:func:`face_track_clips`): [("face0", features),
    ...]; a video without a face track raises ``marlin.face.NoFaceError``."""
    if reduction not in ("none", "mean", "max"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'max', got {reduction!r}")
    model = backend_model(model, backend, precision)
    model.eval()
    cfg = model.config
    tracks = face_track_clips(path, cfg.n_frames, sample_rate, stride, cover_tail, cfg.img_size, min_track_frames)
    return [(name, _encode_reduce(model, clips, reduction, keep_seq, batch_size, precision)) for name, clips in tracks]


def backend_model(model, backend: str = "torch", precision: Precision = Precision.FP32):
    """What runs the encoder for ``backend`` in ``precision`` (resolved for it): ``model`` itself for torch, else
    its export run by that runtime on the CPU (`marlin.deploy.runtime_model`: exported once per weights). An
    exported model (`marlin.deploy.load_export`) runs in its own runtime ("torch", the default, takes it as it
    is)."""
    from .deploy import ExportedModel, runtime_model

    if isinstance(model, ExportedModel):
        if backend not in ("torch", model.backend):
            raise ValueError(f"this exported model runs in {model.backend}, not {backend}")
        backend = model.backend
    if backend != "torch" and not isinstance(model, ExportedModel):
        model = runtime_model(model, backend, precision)
    return model


def _encode_reduce(model, clips, reduction: str, keep_seq: bool, batch_size: int | None,
                   precision: Precision) -> Tensor:
    """Features of ``clips`` (`encode_clips` through ``model.extract_features``), reduced over clips."""
    device = getattr(model, "device", None)
    out = encode_clips(lambda x: model.extract_features(x, keep_seq=keep_seq, precision=precision), clips,
                       clips_per_call(model.config, device, batch_size), device)
    if reduction == "mean":
        return out.mean(0)
    if reduction == "max":
        return out.max(0).values
    return out
