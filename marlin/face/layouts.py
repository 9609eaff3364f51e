"""Input layouts for ``marlin preprocess``: which inputs make up a dataset and where each item goes.

A job is (source path, relative item name); the item directory is ``OUT/<relative name>``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..atomic import atomic_path
from ..video import video_names
from .source import IMAGE_EXTENSIONS

LAYOUTS = ("videos", "ytf", "celebvhq")
SPLITS = ("train_set.csv", "val_set.csv")


def videos_jobs(root) -> list[tuple[Path, str]]:
    """Any folder tree of video files (or one file, or a .txt list): names keep the folder structure
    (:func:`marlin.video.video_names`, shared with ``marlin extract``: ``a.avi``, ``a.mp4`` -> ``a``, ``a_mp4``)."""
    return video_names([root])


def ytf_root(root) -> Path:
    root = Path(root)
    return root / "frame_images_DB" if (root / "frame_images_DB").is_dir() else root


def ytf_jobs(root) -> list[tuple[Path, str]]:
    """YouTube Faces ``frame_images_DB/<person>/<n>/*.jpg``: one item ``<person>/<n>`` per frame folder."""
    base = ytf_root(root)
    if not base.is_dir():
        raise FileNotFoundError(f"{root}: YouTube Faces folder does not exist")
    jobs = []
    for person in sorted(p for p in base.iterdir() if p.is_dir()):
        for clip in sorted((c for c in person.iterdir() if c.is_dir()), key=lambda c: (len(c.name), c.name)):
            if any(f.suffix.lower() in IMAGE_EXTENSIONS for f in clip.iterdir()):
                jobs.append((clip, f"{person.name}/{clip.name}"))
    return jobs


def celebvhq_jobs(root) -> list[tuple[Path, str]]:
    """CelebV-HQ ``downloaded/*.mp4`` (or a folder of the clips themselves): one item per clip name."""
    root = Path(root)
    base = root / "downloaded" if (root / "downloaded").is_dir() else root
    if not base.is_dir():
        raise FileNotFoundError(f"{root}: CelebV-HQ folder does not exist")
    return [(p, p.stem) for p in sorted(base.glob("*.mp4"))]


def jobs_for(layout: str, root) -> list[tuple[Path, str]]:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (choose from {', '.join(LAYOUTS)})")
    if not Path(root).exists():
        raise FileNotFoundError(f"{root}: input does not exist")
    return {"videos": videos_jobs, "ytf": ytf_jobs, "celebvhq": celebvhq_jobs}[layout](root)


def find_split_files(root, splits_dir=None) -> dict[str, Path]:
    """The official YTF split files (``train_set.csv``/``val_set.csv``, also ``ytf_`` prefixed) from
    ``splits_dir`` or, failing that, the input folder and its parent."""
    places = [Path(splits_dir)] if splits_dir else [Path(root), Path(root).parent]
    found = {}
    for name in SPLITS:
        for d in places:
            for cand in (d / name, d / f"ytf_{name}"):
                if cand.is_file() and name not in found:
                    found[name] = cand
    return found


def write_splits(out, split_files: dict[str, Path], lengths: dict[str, int]) -> dict[str, int]:
    """Write ``OUT/train_set.csv`` etc. (``path,len``) keeping the rows whose item exists, with its real
    frame count; atomic. Returns rows written per file."""
    written = {}
    for name, src in split_files.items():
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and ("path" not in rows[0] or "len" not in rows[0]):
            raise ValueError(f"{src}: split file needs the columns path,len")
        keep = [(r["path"], lengths[r["path"]]) for r in rows if r["path"] in lengths]
        with atomic_path(Path(out) / name) as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "len"])
            w.writerows(keep)
        written[name] = len(keep)
    return written
