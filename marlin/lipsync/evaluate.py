"""Batch evaluation: LSE-D / LSE-C of every video (face crops with their audio) and optionally FID against real
frames. Per-video results are written atomically to ``OUT/videos/<name>.json`` and reused on a rerun (resume);
a video that cannot be read is reported and skipped. ``OUT/summary.json`` holds the means."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..atomic import write_json
from .audio import load_audio
from .data import Entry, face_fps, read_faces
from .mel import melspectrogram
from .metrics import lse

log = logging.getLogger(__name__)


def load_scorer(path, device: str = "cpu"):
    """A SyncNet file -> (score(faces, audio, fps, vshift) -> dict, face size to read frames at (None: as they
    are), name).

    Either our expert (`marlin lipsync train-syncnet`) or syncnet_python's ``syncnet_v2.model``."""
    from ..checkpoints import load_file
    from .syncnet_v2 import SyncNetV2, is_official, official_lse
    from .train import load_syncnet

    raw = load_file(path)
    if is_official(raw):
        net = SyncNetV2.from_state_dict(raw, path).to(device)

        def score(faces, audio, fps, vshift):
            if abs(fps - 25.0) > 0.01:
                raise ValueError(f"the official SyncNet expects 25 fps video, got {fps:g} fps")
            return official_lse(net, faces, audio, vshift)

        return score, None, "syncnet_v2"  # frames at their own size: official_lse resizes them as syncnet_python
    net = load_syncnet(path).to(device)
    return (lambda faces, audio, fps, vshift: lse(net, faces, melspectrogram(audio), vshift, fps),
            net.config.face_size, "ours")


def evaluate_lse(scorer, entries: list[Entry], out, vshift: int = 15, progress: bool = True) -> dict:
    """LSE of each entry (resumable) with a scorer from `load_scorer`; returns {"summary", "results"}."""
    from tqdm import tqdm

    out = Path(out)
    results, failed = {}, {}
    for e in tqdm(entries, desc="LSE", unit="video", **({} if progress else {"disable": True})):
        dest = out / "videos" / f"{e.name}.json"
        if dest.is_file():
            results[e.name] = json.loads(dest.read_text())
            continue
        score, size, kind = scorer
        try:
            faces = read_faces(e.faces, size)
            r = score(faces, load_audio(e.audio), face_fps(e.faces), vshift)
        except Exception as err:  # report and skip
            failed[e.name] = f"{e.faces}: {err}"
            log.warning("skipping %s: %s", e.faces, err)
            continue
        r = {"name": e.name, "faces": str(e.faces), "audio": str(e.audio), "frames": len(faces), "syncnet": kind, **r}
        write_json(dest, r)
        results[e.name] = r
    summary = {"videos": len(results), "failed": failed}
    if results:
        summary["lse_d"] = float(np.mean([r["lse_d"] for r in results.values()]))
        summary["lse_c"] = float(np.mean([r["lse_c"] for r in results.values()]))
    return {"summary": summary, "results": results}


def evaluate_fid(extractor, generated: list[Entry], real: list[Entry], size: int, batch: int = 32) -> float:
    """FID between the frames of two sets of face videos (resized to ``size``)."""
    from .fid import fid

    def frames(entries):
        for e in entries:
            try:
                yield from read_faces(e.faces, size)
            except Exception as err:
                log.warning("FID: skipping %s: %s", e.faces, err)

    return fid(extractor, frames(generated), frames(real), batch)


def write_summary(out, summary: dict) -> None:
    write_json(Path(out) / "summary.json", summary)
