"""Training data for lip sync: the LRS2 layout and random windows of (faces, mel) for SyncNet and the generator.

LRS2: ``ROOT/{pretrain,train,val,test}.txt`` list ``<speaker>/<id>`` (extra tokens after the name, as in LRS2's
test list, are ignored); the videos of the train/val/test lists are ``ROOT/main/<speaker>/<id>.mp4``, those of
the pretrain list ``ROOT/pretrain/<speaker>/<id>.mp4`` (LRS2's own layout). Faces come from, in order:
``FACES/<speaker>/<id>/`` as a preprocessed face item (`marlin.data.layout`, written by `marlin preprocess`),
or as Wav2Lip's preprocessed folder (``*.jpg`` + ``audio.wav``); else the video itself is taken as an already
cropped face video. Audio always comes from the item's ``audio.wav`` when present, else the source mp4.
"""
from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import NoUsableDataError
from .align import FPS, frame_chunks, frames_for_audio, mel_window
from .audio import load_audio
from .mel import melspectrogram

log = logging.getLogger(__name__)
SPLITS = ("pretrain", "train", "val", "test")


def split_dir(split: str) -> str:
    """The LRS2 folder holding a split's videos: ``pretrain`` for the pretrain list, ``main`` for the others."""
    return "pretrain" if split == "pretrain" else "main"


@dataclass(frozen=True)
class Entry:
    """One talking video: where its face frames and its audio come from."""

    name: str
    faces: Path  # a face video, a face item directory or a folder of jpgs
    audio: Path


def read_lrs2_list(path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: LRS2 file list does not exist")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def lrs2_entries(root, split: str = "train", faces=None) -> list[Entry]:
    """Entries of an LRS2 split; ``faces`` is an optional root of preprocessed faces (see module doc)."""
    if split not in SPLITS:
        raise ValueError(f"unknown LRS2 split {split!r}; choose one of {SPLITS}")
    root = Path(root)
    out = []
    for name in read_lrs2_list(root / f"{split}.txt"):
        video = root / split_dir(split) / f"{name}.mp4"
        face = Path(faces) / name if faces is not None else None
        if face is not None and face.is_dir():
            wav = face / "audio.wav"
            out.append(Entry(name, face, wav if wav.is_file() else video))
        else:
            out.append(Entry(name, video, video))
    return out


def video_entries(paths) -> list[Entry]:
    """Entries for face videos (with their own audio) given as files, folders or txt lists; one name per video
    (`marlin.video.video_names`: names mirror the inputs' tree, clashes are refused)."""
    from ..video import video_names

    return [Entry(name, p, p) for p, name in video_names(paths)]


def face_fps(path) -> float:
    """Frame rate of a face video or item (25 for a jpg folder, as Wav2Lip's preprocessed LRS2)."""
    from ..data.layout import is_item, load_item
    from ..video import probe

    path = Path(path)
    if path.is_dir():
        return load_item(path).fps if is_item(path) else FPS
    return probe(path).fps


def read_faces(path, size: int | None) -> np.ndarray:
    """(T, size, size, 3) uint8 face frames from a video, a face item directory or a folder of jpgs (resized with
    INTER_AREA; ``size`` None keeps their own size)."""
    import cv2

    from ..data.layout import is_item, load_item
    from ..video import TruncatedVideoError, probe, read_frames

    path = Path(path)
    if path.is_dir():
        if is_item(path):
            frames = load_item(path).read_frames()
        else:
            files = sorted(path.glob("*.jpg"), key=lambda f: (len(f.stem), f.stem))
            if not files:
                raise FileNotFoundError(f"{path}: neither a face item (meta.json) nor a folder of jpg frames")
            frames = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files])
    else:
        frames = read_frames(path)
        declared = probe(path).num_frames
        if len(frames) < declared:  # the stream ends early: refused, not used silently (as extraction does)
            raise TruncatedVideoError(path, len(frames), declared)
    if size is not None and frames.shape[1:3] != (size, size):
        frames = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    return frames


class ClipStore:
    """Decodes entries on demand (faces resized to ``size``, mel spectrogram, fps) and keeps the last few in
    memory. Frames without audio at the end are dropped. A broken entry is reported once and skipped."""

    def __init__(self, entries: list[Entry], size: int, min_frames: int, cache: int = 64):
        if not entries:
            raise ValueError("no videos to train on")
        self.entries = list(entries)
        self.size, self.min_frames, self.cache = size, min_frames, cache
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray, float]] = OrderedDict()
        self.bad: dict[str, str] = {}

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray, float] | None:
        """(faces (T, S, S, 3) uint8, mel (80, Tm), fps) of entry ``i``, or None when it is unusable."""
        e = self.entries[i]
        if e.name in self._cache:
            self._cache.move_to_end(e.name)
            return self._cache[e.name]
        if e.name in self.bad:
            return None
        try:
            faces, fps = read_faces(e.faces, self.size), face_fps(e.faces)
            audio = load_audio(e.audio)
            faces = faces[: frames_for_audio(len(audio), fps=fps)]
            if len(faces) < self.min_frames:
                raise ValueError(f"{e.faces}: {len(faces)} frames with audio, need at least {self.min_frames}")
            mel = melspectrogram(audio)
        except Exception as err:  # report and skip: one bad video must not end a run
            self.bad[e.name] = str(err)
            log.warning("skipping %s: %s", e.name, err)
            return None
        self._cache[e.name] = (faces, mel, fps)
        if len(self._cache) > self.cache:
            self._cache.popitem(last=False)
        return faces, mel, fps

    def pick(self, rng: np.random.Generator):
        """A random usable (faces, mel, fps)."""
        for _ in range(10 * len(self.entries)):
            got = self.get(int(rng.integers(len(self.entries))))
            if got is not None:
                return got
            if len(self.bad) == len(self.entries):
                break
        raise NoUsableDataError("no usable video: " + "; ".join(f"{k}: {v}" for k, v in list(self.bad.items())[:5]))


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float().div_(255)


def lower_half(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, S, S) -> (..., 3, S/2, S): the mouth region SyncNet and the discriminator look at."""
    return x[..., x.shape[-2] // 2:, :]


def mask_lower(x: torch.Tensor) -> torch.Tensor:
    """Zero the lower half (the generator must draw it)."""
    x = x.clone()
    x[..., x.shape[-2] // 2:, :] = 0
    return x


def sync_batch(store: ClipStore, batch: int, window: int, rng: np.random.Generator, min_offset: int = 2):
    """SyncNet pairs, half in sync and half with audio shifted by >= min_offset frames.

    -> faces (B, T, 3, S/2, S), mel (B, 1, 80, mel_steps(T)), label (B,) float (1 = in sync)."""
    faces, mels, labels = [], [], []
    for b in range(batch):
        frames, mel, fps = store.pick(rng)
        n = len(frames)
        s = int(rng.integers(0, n - window + 1))
        y = b % 2 == 0
        a = s
        if not y:
            choices = [k for k in range(0, n - window + 1) if abs(k - s) >= min_offset]
            a = int(rng.choice(choices)) if choices else (s + n // 2) % (n - window + 1)
        faces.append(lower_half(to_tensor(frames[s:s + window])))
        mels.append(torch.from_numpy(mel_window(mel, a, window, fps))[None])
        labels.append(float(y))
    return torch.stack(faces), torch.stack(mels), torch.tensor(labels)


def generator_batch(store: ClipStore, batch: int, window: int, sync_window: int, rng: np.random.Generator,
                    chunk_before: int | None = None):
    """Wav2Lip training windows (``chunk_before``: see `align.frame_chunks`).

    -> inputs (B, T, 6, S, S) (lower-half-masked frames ++ reference frames from elsewhere in the clip),
       chunks (B, T, 1, 80, 16) per-frame audio, sync_mels (B, T/w, 1, 80, mel_steps(w)), target (B, T, 3, S, S)."""
    if window % sync_window:
        raise ValueError(f"the generator window ({window}) must be a multiple of the SyncNet window ({sync_window})")
    inputs, chunks, syncs, targets = [], [], [], []
    for _ in range(batch):
        frames, mel, fps = store.pick(rng)
        n = len(frames)
        s = int(rng.integers(0, n - window + 1))
        far = [k for k in range(0, n - window + 1) if abs(k - s) >= window]
        r = int(rng.choice(far)) if far else int(rng.integers(0, n - window + 1))
        gt = to_tensor(frames[s:s + window])
        inputs.append(torch.cat([mask_lower(gt), to_tensor(frames[r:r + window])], dim=1))
        chunks.append(torch.from_numpy(frame_chunks(mel, range(s, s + window), fps, before=chunk_before))[:, None])
        syncs.append(torch.stack([torch.from_numpy(mel_window(mel, s + k, sync_window, fps))[None]
                                  for k in range(0, window, sync_window)]))
        targets.append(gt)
    return torch.stack(inputs), torch.stack(chunks), torch.stack(syncs), torch.stack(targets)


class _BatchStream(torch.utils.data.IterableDataset):
    """Endless batches ``make(store, rng=...)``, batch i (from ``start`` on) drawn with its own generator seeded
    (seed, i): DataLoader worker w of W makes batches start + w, start + w + W, ... (the loader hands them out in
    turn), so the batches depend neither on the number of workers nor on the step a run resumed at."""

    def __init__(self, store: ClipStore, make, seed: int, start: int = 0):
        self.store, self.make, self.seed, self.start = store, make, seed, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in itertools.count(self.start + worker, workers):
            yield self.make(self.store, rng=np.random.default_rng([self.seed, i]))


def batch_stream(store: ClipStore, make, seed: int, start: int = 0, workers: int = 0, pin_memory: bool = False):
    """Endless batches from ``make`` (e.g. ``functools.partial(sync_batch, batch=16, window=5)``), batch ``start``
    on (a resumed run), built in this process when ``workers`` is 0, else by that many DataLoader processes (each
    with its own decode cache). ``pin_memory`` (training on a CUDA device): the worker processes' batches come in
    pinned memory, so that they travel to the GPU asynchronously."""
    stream = _BatchStream(store, make, seed, start)
    if workers <= 0:
        return iter(stream)
    return iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory))
