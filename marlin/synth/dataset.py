"""Write a synthetic dataset: items in the preprocessed face-clip layout, label files and splits."""
from __future__ import annotations

import json
import math
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..atomic import write_text
from ..data.layout import is_item, write_item
from .clip import CROP_MARGIN, render_item
from .labels import ACTION, APPEARANCE, EXPRESSION, MANIPULATION, SPLITS, TASKS, sample_labels, split_of

CONFIG = "synth.json"
RAW_DIR = "raw"
LABELS_DIR = "labels"
VERSION = "2"  # 2: clips encoded with x264 preset ultrafast (1: medium); the pictures are drawn as in 1
PRESET = "ultrafast"  # libx264 preset of every synthetic clip: ~3x faster to encode than medium, decodes faster


def item_id(k: int) -> str:
    return f"synth_{k:06d}"


def _config(frames: int, size: int, seed: int, fps: float) -> dict:
    return {"generator": f"marlin.synth/{VERSION}", "seed": int(seed), "frames": int(frames), "size": int(size),
            "fps": float(fps), "crop_margin": CROP_MARGIN, "appearance": list(APPEARANCE), "action": list(ACTION),
            "expression": list(EXPRESSION), "manipulation": list(MANIPULATION),
            "tasks": {name: {"kind": kind, "classes": list(names), "file": f"{LABELS_DIR}/{name}.csv"}
                      for name, (kind, names) in TASKS.items()}}


def _check_config(out: Path, cfg: dict) -> None:
    p = out / CONFIG
    if p.exists():
        try:
            old = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: invalid JSON ({e})") from None
        diff = [key for key in ("generator", "seed", "frames", "size", "fps") if old.get(key) != cfg[key]]
        if diff:
            raise ValueError(f"{p}: this directory holds a synthetic set made with other settings "
                             f"({', '.join(f'{d}={old.get(d)!r}' for d in diff)}); use another output directory")
    else:
        write_text(p, json.dumps(cfg, indent=1))


def _done(out: Path, k: int, raw: bool) -> bool:
    return is_item(out / item_id(k)) and (not raw or (out / RAW_DIR / f"{item_id(k)}.mp4").exists())


def make_item(out_dir, k: int, frames: int, size: int, seed: int, fps: float = 25.0, raw_videos: bool = False) -> Path:
    """Render item ``k`` and write it (and its raw video) atomically; returns the item directory."""
    import cv2
    import numpy as np

    from ..video import write_video

    out = Path(out_dir)
    name = item_id(k)
    clip = render_item(seed, k, frames, size, fps, raw=raw_videos)
    source = f"synth://{seed}/{k}"
    if raw_videos:
        raw_path = out / RAW_DIR / f"{name}.mp4"
        write_video(raw_path, clip.raw, fps=fps, crf=clip.info["camera"]["crf"], preset=PRESET)
        source = f"{RAW_DIR}/{name}.mp4"
    lab = clip.labels
    meta = {
        "name": name, "source": source, "fps": float(fps),
        "boxes": np.round(clip.crop_boxes.astype(float), 3).tolist(), "face_found": [True] * len(clip.frames),
        "face_found_ratio": 1.0, "scene_cuts": [], "landmark_scheme": "ibug68",
        "face_boxes": np.round(clip.face_boxes.astype(float), 3).tolist(),
        "head_boxes": np.round(clip.head_boxes.astype(float), 3).tolist(), "source_size": list(clip.source_size),
        "backends": {"synth": f"marlin.synth/{VERSION}", "opencv": cv2.__version__, "numpy": np.__version__},
        "labels": {"appearance": lab["appearance"], "action": lab["action"], "expression": lab["expression"],
                   "manipulated": lab["manipulated"]},
        "synth": {"seed": int(seed), "index": int(k), "split": split_of(seed, k), **clip.info},
    }
    item = write_item(out / name, clip.frames, meta, parse=clip.parse, landmarks=clip.landmarks,
                      crf=clip.info["camera"]["crf"], preset=PRESET)
    return item.root


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core: no thread pools inside workers


def _make(args):
    try:
        return args[1], make_item(*args), None
    except Exception as e:  # one bad item is reported and skipped, never the end of a run
        return args[1], None, f"{type(e).__name__}: {e}"


def _result(future, k: int):
    try:
        return future.result()
    except Exception as e:  # a worker process died (killed, out of memory): report the item, go on
        return k, None, f"worker process failed ({type(e).__name__}: {e})"


def write_label_files(out_dir, ks, seed: int, fps: float = 25.0, frames: int = 16) -> None:
    """CelebV-HQ-style ``celebvhq_info.json``, ``labels/<task>.csv`` and ``train/val/test.txt`` for items ``ks``."""
    out = Path(out_dir)
    (out / LABELS_DIR).mkdir(exist_ok=True)
    labels = {k: sample_labels(seed, k) for k in ks}
    clips = {}
    for k, lab in labels.items():
        clips[item_id(k)] = {
            "ytb_id": item_id(k), "duration": {"start_sec": 0.0, "end_sec": round(frames / fps, 3)},
            "attributes": {"appearance": lab["appearance"], "action": lab["action"],
                           "emotion": {"sep_flag": False, "labels": EXPRESSION[lab["expression"]]}},
            "version": f"marlin.synth/{VERSION}"}
    info = {"meta_info": {"appearance_mapping": list(APPEARANCE), "action_mapping": list(ACTION),
                          "emotion_mapping": list(EXPRESSION)}, "clips": clips}
    write_text(out / "celebvhq_info.json", json.dumps(info))
    for task, (kind, names) in TASKS.items():
        multi = kind == "multilabel"
        header = "path," + (",".join(names) if multi else "label")
        lines = [header] + [",".join([item_id(k)] + [str(v) for v in (lab[task] if multi else [lab[task]])])
                            for k, lab in labels.items()]
        write_text(out / LABELS_DIR / f"{task}.csv", "\n".join(lines) + "\n")
    for split in SPLITS:
        ids = [item_id(k) for k in ks if split_of(seed, k) == split]
        write_text(out / f"{split}.txt", "".join(i + "\n" for i in ids))


def generate_dataset(out_dir, num: int, frames: int = 16, size: int = 96, seed: int = 0, workers: int = 1,
                     raw_videos: bool = False, progress: bool = True, fps: float = 25.0) -> list[Path]:
    """Generate items 0..num-1 of the world ``seed`` under ``out_dir``; returns their directories.

    Resumable: finished items are kept. Deterministic: item k depends only on ``seed``, ``k`` and the sizes.
    A failing item is reported on stderr and skipped.
    """
    from tqdm import tqdm

    if num < 0 or frames < 2 or size < 32 or size % 2:
        raise ValueError(f"synth: need num >= 0, frames >= 2 and an even size >= 32 (H.264 needs even sides; "
                         f"got num={num}, frames={frames}, size={size})")
    if not (math.isfinite(fps) and fps > 0):  # checked before synth.json records it
        raise ValueError(f"{out_dir}: synth needs a frame rate above 0 (got fps={fps})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, _config(frames, size, seed, fps))
    todo = [k for k in range(num) if not _done(out, k, raw_videos)]
    jobs = [(out, k, frames, size, seed, fps, raw_videos) for k in todo]
    failed = {}
    bar = tqdm(total=len(jobs), desc="synth", unit="clip", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        results = map(_make, jobs)
    else:
        import multiprocessing

        # spawn, not fork: a child forked from a process holding torch / OpenCV thread pools can hang
        # (seen here). As always with spawn, call this under `if __name__ == "__main__":` in a script.
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
        futures = {pool.submit(_make, j): j[1] for j in jobs}
        results = (_result(f, futures[f]) for f in as_completed(futures))
    try:
        for k, _, err in results:
            if err:
                failed[k] = err
                print(f"synth: item {item_id(k)} failed: {err}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        if workers > 1 and len(jobs) > 1:
            pool.shutdown()
    done = [k for k in range(num) if k not in failed and _done(out, k, raw_videos)]
    write_label_files(out, done, seed, fps, frames)
    return [out / item_id(k) for k in done]
