"""FaceForensics++: real vs fake at video level, with the official split pair lists.

Layout (as downloaded by the official script)::

    ROOT/original_sequences/youtube/<c23|c40|raw>/videos/071.mp4
    ROOT/manipulated_sequences/<Deepfakes|Face2Face|FaceSwap|NeuralTextures>/<c23|c40|raw>/videos/071_054.mp4
    ROOT/splits/train.json, val.json, test.json  (or ROOT/train.json ...): [["071", "054"], ...]

A pair [a, b] gives the real videos a, b and the fakes a_b, b_a of every method: 360 training pairs give
720 real + 2880 fake videos. Tasks: ``real_fake`` (binary, 1 = fake) and ``method`` (multi-class: real + one
class per method).

Face crops for fine-tuning: the same tree below ``ROOT/preprocessed``, as written by ::

    marlin preprocess ROOT/original_sequences ROOT/preprocessed/original_sequences
    marlin preprocess ROOT/manipulated_sequences ROOT/preprocessed/manipulated_sequences

(items ``ROOT/preprocessed/original_sequences/youtube/c23/videos/071/clip.mp4``). Option ``videos``: the
folders below ROOT that hold the tree, searched in order (default ``["."]``, the raw download; the FT configs
use ``["preprocessed"]``). A preprocessed item directory (``<name>/clip.mp4``) may replace any ``.mp4``.
"""
from __future__ import annotations

from pathlib import Path

from ..tasks import Task
from .base import SPLITS, Dataset, DatasetError, Sample, find_video, read_json, video_key

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
_SPLIT_FILES = {"train": "train.json", "val": "val.json", "test": "test.json"}


def _pairs(path: Path) -> list[tuple[str, str]]:
    data = read_json(path, "FaceForensics++ split file")
    if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
        raise DatasetError(path, "expected a list of [target, source] id pairs")
    return [(str(a), str(b)) for a, b in data]


def _split_file(root: Path, split: str, split_dir) -> Path:
    candidates = [Path(split_dir)] if split_dir else [root / "splits", root]
    for d in candidates:
        if (d / _SPLIT_FILES[split]).is_file():
            return d / _SPLIT_FILES[split]
    return candidates[0] / _SPLIT_FILES[split]


PREPROCESS_HINT = ("for fine-tuning, make face crops with `marlin preprocess ROOT/original_sequences "
                   "ROOT/preprocessed/original_sequences` (and the same for manipulated_sequences)")


def _folders(root: Path, base: str, compression: str, methods: tuple[str, ...]) -> tuple[Path, dict[str, Path]]:
    """The real and per-method video folders of the official tree below ``root / base``, checked."""
    top = root / base
    real = top / "original_sequences" / "youtube" / compression / "videos"
    fakes = {m: top / "manipulated_sequences" / m / compression / "videos" for m in methods}
    for what, d in [("real", real), *fakes.items()]:
        if not d.is_dir():
            hint = f"; {PREPROCESS_HINT}" if base != "." else ""
            raise DatasetError(d, f"FaceForensics++ {what} videos folder does not exist{hint}")
    return real, fakes


def load_ffpp(root, task: str = "real_fake", compression: str = "c23", methods=METHODS, split_dir=None,
              videos=(".",)) -> Dataset:
    """FaceForensics++ samples at ``compression`` (c23 | c40 | raw) for ``task`` (real_fake | method);
    ``videos``: folders below ``root`` holding the official tree, searched in order (e.g. ``["preprocessed"]``)."""
    root = Path(root)
    if task not in ("real_fake", "method"):
        raise ValueError(f"FaceForensics++ task must be 'real_fake' or 'method', got {task!r}")
    methods = tuple(methods)
    bases = [videos] if isinstance(videos, str) else list(videos)
    trees = [_folders(root, b, compression, methods) for b in bases]
    labels = ("real", "fake") if task == "real_fake" else ("real",) + methods
    ds = Dataset("ffpp", Task(task, "binary" if task == "real_fake" else "multiclass", labels))
    for split in SPLITS:
        ds.splits[split] = []
        pairs = _pairs(_split_file(root, split, split_dir))
        entries = [(name, [real for real, _ in trees], 0) for p in pairs for name in p]
        for m_index, m in enumerate(methods, start=1):
            entries += [(f"{a}_{b}", [fakes[m] for _, fakes in trees], 1 if task == "real_fake" else m_index)
                        for p in pairs for a, b in (p, p[::-1])]
        for name, folders, target in entries:
            video = find_video(name, folders)
            if video is None:
                ds.skipped.append(f"{name}: video not found in {', '.join(map(str, folders))}")
                continue
            ds.splits[split].append(Sample(video_key(video, root), video, target))
    return ds
