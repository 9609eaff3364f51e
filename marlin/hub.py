"""Downloading the official release files into a local cache (atomic, resumable, with a progress bar)."""
from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import MarlinError


class DownloadError(MarlinError, RuntimeError):
    """A release file could not be downloaded (network, HTTP error, cut-off transfer); a rerun resumes."""


def cache_dir() -> Path:
    """`$MARLIN_CACHE`, else `~/.cache/marlin`."""
    return Path(os.environ.get("MARLIN_CACHE", Path.home() / ".cache" / "marlin"))


def download(url: str, dest: Path, progress: bool = True, chunk: int = 1 << 20, timeout: float = 60) -> Path:
    """Download `url` to `dest`. A partial `.part` file is resumed with an HTTP Range request; the final
    file appears only when complete."""
    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # already complete
            os.replace(part, dest)
            return dest
        raise DownloadError(f"{url}: download failed (HTTP {e.code})") from None
    except OSError as e:
        raise DownloadError(f"{url}: download failed ({e}); check the network, or load a local copy with "
                            "Marlin.from_file") from None
    with resp:
        resumed = have and resp.status == 206
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length else None
        with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while True:
                buf = resp.read(chunk)
                if not buf:
                    break
                f.write(buf)
                bar.update(len(buf))
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"{url}: download incomplete ({part.stat().st_size} of {total} bytes); run again to resume")
    os.replace(part, dest)
    return dest


def clean_cache(verbose: bool = True) -> None:
    """`Marlin.clean_cache`: delete the downloaded release files (`cache_dir()`)."""
    path = cache_dir()
    if path.exists():
        shutil.rmtree(path)
        if verbose:
            print(f"MARLIN checkpoint cache cleaned: {path}")
