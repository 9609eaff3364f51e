"""The on-disk layout of preprocessed face clips, shared by `marlin preprocess`, `marlin synth`,
pretraining, extraction and the downstream adapters.

One item (one source video) is one directory::

    OUT/<relative path of the source, without extension>/
        clip.mp4        cropped face frames, H.264, size x size   (or frames/000000.jpg ... for YTF)
        parse.npz       "parse": uint8 (T, size, size) LaPa-11 class map per frame (compressed)
        landmarks.npz   optional: "landmarks" float32 (T, K, 2) in crop pixels
        meta.json       see below

meta.json keys: ``format`` ("marlin-face/1"), ``source`` (path of the input), ``num_frames``, ``fps``,
``size``, ``boxes`` (per frame [x1, y1, x2, y2] in source pixels), ``face_found`` (per frame bool),
``backends`` (name -> version of each component used), optional ``labels`` (task -> value).

An item directory is first written under a hidden temporary name and renamed when complete, so a
directory named like an item is always whole; a finished item is recognised by its ``meta.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMAT = "marlin-face/1"
META = "meta.json"
CLIP = "clip.mp4"
FRAMES_DIR = "frames"
PARSE = "parse.npz"
LANDMARKS = "landmarks.npz"

# LaPa 11-class labels used by the official face parser and Fasking.
PARSE_CLASSES = ("background", "skin", "left_brow", "right_brow", "left_eye", "right_eye",
                 "nose", "upper_lip", "inner_mouth", "lower_lip", "hair")


@dataclass
class FaceItem:
    """A preprocessed face video on disk."""

    root: Path
    meta: dict = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.meta["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps", 25.0))

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def name(self) -> str:
        return self.meta.get("name", self.root.name)

    @property
    def labels(self) -> dict:
        return self.meta.get("labels", {})

    @property
    def video_path(self) -> Path:
        return self.root / CLIP

    def has_parse(self) -> bool:
        return (self.root / PARSE).exists()

    def read_frames(self, indices: Sequence[int] | None = None) -> np.ndarray:
        """(T, S, S, 3) uint8 RGB; ``indices`` selects frames (clipped to the last frame)."""
        frames_dir = self.root / FRAMES_DIR
        if frames_dir.is_dir():
            import cv2

            files = sorted(frames_dir.glob("*.jpg")) + sorted(frames_dir.glob("*.png"))
            files.sort()
            sel = range(len(files)) if indices is None else [min(i, len(files) - 1) for i in indices]
            return np.stack([cv2.cvtColor(cv2.imread(str(files[i])), cv2.COLOR_BGR2RGB) for i in sel])
        from ..video import read_frames

        if indices is None:
            return read_frames(self.root / CLIP)
        n = self.num_frames
        idx = [min(int(i), n - 1) for i in indices]
        return read_frames(self.root / CLIP, idx)

    def read_parse(self, indices: Sequence[int] | None = None) -> np.ndarray | None:
        """(T, S, S) uint8 parse maps, or None when the item has none."""
        p = self.root / PARSE
        if not p.exists():
            return None
        with np.load(p) as z:
            parse = z["parse"]
        if indices is None:
            return parse
        return parse[[min(int(i), len(parse) - 1) for i in indices]]

    def read_landmarks(self) -> np.ndarray | None:
        p = self.root / LANDMARKS
        if not p.exists():
            return None
        with np.load(p) as z:
            return z["landmarks"]


def is_item(path) -> bool:
    return (Path(path) / META).is_file()


def item_video(path) -> Path:
    """The frames of an item folder: its clip.mp4, else its frames/ folder (YouTube Faces layout)."""
    path = Path(path)
    return path / CLIP if (path / CLIP).is_file() else path / FRAMES_DIR


def load_item(path) -> FaceItem:
    path = Path(path)
    try:
        meta = json.loads((path / META).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not a preprocessed face item (no {META})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path / META}: invalid JSON ({e})") from None
    if not isinstance(meta, dict) or "num_frames" not in meta:  # another tool's meta.json, not an item's
        raise ValueError(f"{path / META}: not the meta.json of a preprocessed face item (no num_frames)")
    return FaceItem(path, meta)


def list_items(root) -> list[FaceItem]:
    """All finished items below ``root`` (recursive), sorted by path; hidden temporaries are skipped."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: data directory does not exist")
    if is_item(root):
        return [load_item(root)]
    items = []
    for meta in sorted(root.rglob(META)):
        if any(part.startswith(".") for part in meta.relative_to(root).parts):
            continue
        items.append(load_item(meta.parent))
    return items


def item_dir(out_root, rel: str | os.PathLike) -> Path:
    """Where the item for a source with relative path ``rel`` goes (extension dropped)."""
    rel = Path(rel)
    return Path(out_root) / rel.with_suffix("")


def write_item(dest, frames, meta: dict, parse: np.ndarray | None = None,
               landmarks: np.ndarray | None = None, as_jpg: bool = False, crf: int = 18,
               preset: str = "medium", encoded=None) -> FaceItem:
    """Write one item atomically: everything goes to a hidden sibling directory renamed at the end.

    ``frames``: (T, S, S, 3) uint8 array (or a sequence of such frames); ``crf``, ``preset``: H.264 settings.
    ``encoded``: a file holding these frames already encoded with these settings (``FacePipeline.run(...,
    encode_to=)``), moved in as the clip instead of encoding them again.
    """
    import cv2

    from ..atomic import atomic_dir
    from ..video import write_video

    dest = Path(dest)
    with atomic_dir(dest) as tmp:
        frames = np.asarray(frames, dtype=np.uint8)
        if as_jpg:
            (tmp / FRAMES_DIR).mkdir()
            for i, f in enumerate(frames):
                cv2.imwrite(str(tmp / FRAMES_DIR / f"{i:06d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
        elif encoded is not None:
            os.replace(encoded, tmp / CLIP)
        else:
            write_video(tmp / CLIP, frames, fps=float(meta.get("fps", 25.0)), crf=crf, preset=preset)
        if parse is not None:
            parse = np.asarray(parse, dtype=np.uint8)
            if parse.shape[0] != len(frames):
                raise ValueError(f"{dest}: {parse.shape[0]} parse maps for {len(frames)} frames")
            np.savez_compressed(tmp / PARSE, parse=parse)
        if landmarks is not None:
            np.savez_compressed(tmp / LANDMARKS, landmarks=np.asarray(landmarks, dtype=np.float32))
        meta = {"format": FORMAT, "num_frames": int(len(frames)), "size": int(frames.shape[1]), **meta}
        (tmp / META).write_text(json.dumps(meta, indent=1))
    return FaceItem(dest, meta)


def input_names(inputs: Sequence) -> list[tuple[Path, str]]:
    """(input, output name) of every video / item of ``inputs``: files, folders and list files as `marlin
    extract` takes them (`marlin.video.video_names`, the same names and clash rules), where a folder holding
    preprocessed items gives its items, each one input named by its path below the common folder."""
    import os

    from ..errors import MarlinError
    from ..video import video_names

    items, videos = [], []
    for i in inputs:
        p = Path(i)
        if p.is_dir() and (is_item(p) or any(p.rglob("meta.json"))):
            found = [it.root for it in list_items(p)]
            if not found:
                raise MarlinError(f"{p}: holds no finished preprocessed item")
            items += [(f, p if not is_item(p) else p.parent) for f in found]
        else:
            videos.append(i)
    pairs = video_names(videos) if videos else []
    if items:
        root = os.path.commonpath([os.path.abspath(a) for _, a in items])
        pairs += [(f, Path(os.path.relpath(os.path.abspath(f), root)).as_posix()) for f, _ in items]
    owner: dict[str, Path] = {}
    for f, name in pairs:
        if name in owner and os.path.realpath(owner[name]) != os.path.realpath(f):
            raise MarlinError(f"{owner[name]} and {f} would both be written as {name!r}: rename one of them")
        owner[name] = f
    seen, out = set(), []
    for f, name in sorted(pairs, key=lambda pair: pair[1]):
        if name not in seen:
            seen.add(name)
            out.append((Path(f), name))
    return out
