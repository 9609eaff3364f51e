"""Atomic files and directories: an output appears complete under its final name, or not at all.

Every writer in the toolkit goes through here. Temporary names are unique per process *and* call
(``.<name>.<pid>.<random>.tmp``), live beside the destination (same file system, so the final
``os.replace`` is atomic) and are removed when the write fails.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_name(path: Path, suffix: str = "") -> Path:
    """A unique hidden sibling of ``path`` (keeps ``suffix`` last, for writers that choose a format by it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    """The process's umask (read without changing it where /proc says it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable(path, folder: bool = False) -> Path:
    """Check, before any work, that ``path`` (a file, or a folder when ``folder``) can be written: not a folder
    where a file goes (or the reverse), and its nearest existing folder accepts a new file. Creates nothing;
    raises OSError naming the path."""
    import errno
    import tempfile

    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        what = "a folder; give a file name" if path.is_dir() else "a file; give a folder"
        kind = IsADirectoryError if path.is_dir() else NotADirectoryError
        raise kind(errno.EISDIR if path.is_dir() else errno.ENOTDIR, f"the output is {what}", str(path))
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        if not parent.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"cannot write here: {parent} is a file", str(path))
        fd, probe = tempfile.mkstemp(prefix=".marlin-write-check.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except NotADirectoryError:
        raise
    except OSError as e:
        raise PermissionError(e.errno or errno.EACCES, f"cannot write the output here ({e.strerror or e})",
                              str(path)) from None
    return path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically, on error it is removed.

    ``suffix`` defaults to ``path``'s own suffix, so libraries that pick a format from the name
    (``np.save``, ``cv2.imwrite``, PyAV) write the right one. ``fsync`` flushes file and folder (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path, path.suffix if suffix is None else suffix)
    try:
        yield tmp
        if tmp.is_file():  # the mode the umask gives (some writers, e.g. safetensors, create files 0600)
            os.chmod(tmp, 0o666 & ~_umask())
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it becomes ``path`` (an existing ``path`` is replaced when
    ``replace``, else FileExistsError), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            if not replace:
                raise FileExistsError(f"{path}: already exists")
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path, data: bytes, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path, text: str, fsync: bool = False) -> Path:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def _strict(obj):
    """JSON-safe copy: NaN / inf become None (strict JSON has no NaN), tuples become lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return _strict(obj.item())
    if hasattr(obj, "tolist"):
        return _strict(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_json(obj, indent: int | None = 1) -> str:
    """Strict JSON text (``allow_nan=False``; non-finite floats written as null)."""
    return json.dumps(_strict(obj), indent=indent, allow_nan=False)


def write_json(path, obj, indent: int | None = 1, fsync: bool = False) -> Path:
    """Atomic strict-JSON write (non-finite floats as null, so any JSON reader accepts the file)."""
    return write_text(path, to_json(obj, indent) + "\n", fsync=fsync)


def save_npy(path, array) -> Path:
    """Atomic ``np.save``."""
    import numpy as np

    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)
    return Path(path)
