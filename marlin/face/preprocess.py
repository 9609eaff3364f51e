"""Batch preprocessing of a dataset into the layout of ``marlin.data.layout`` (resumable, parallel).

Finished items (a directory with ``meta.json``) are skipped; each item appears atomically
(``write_item``). A failing input (unreadable, truncated unless ``Options.allow_truncated``, no face) is logged
to ``OUT/failures.log`` and the run goes on. An INPUT without inputs or an unwritable OUT is a MarlinError.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import write_json
from ..data.layout import is_item, item_dir, load_item, write_item
from ..errors import MarlinError
from ..video import VideoError, output_dir, probe
from . import layouts
from .jobs import run_jobs
from .pipeline import FacePipeline, NoFaceError, check_options, make_parser
from .preview import item_preview

FAILURES = "failures.log"
SUMMARY = "preprocess_summary.json"
PREVIEWS = "previews"


@dataclass
class Options:
    size: int = 224
    parser: str | None = "landmarks"
    no_face: str = "error"
    num_threads: int = 1  # LiteRT threads per model
    threads: int = 1  # threads per worker: background decoding + parallel parsing
    as_jpg: bool = False
    fps: float = 25.0  # for frame folders (YTF), which carry no rate
    allow_truncated: bool = False  # keep videos that end before their declared frame count (meta: truncated)


_PIPE: FacePipeline | None = None
_OPTS: Options | None = None


def _init(opts: Options) -> None:
    global _PIPE, _OPTS
    _OPTS = opts
    _PIPE = FacePipeline(opts.size, opts.parser, opts.no_face, opts.num_threads, threads=opts.threads,
                         allow_truncated=opts.allow_truncated)


def process_one(job) -> dict:
    """Run the pipeline on one (source, name, out_root) job; never raises."""
    src, name, out = job
    t0 = time.perf_counter()
    try:
        clip = _PIPE.run(src, _OPTS.fps)
        t1 = time.perf_counter()
        meta = {"name": name, **clip.meta}
        write_item(item_dir(out, name), clip.frames, meta, clip.parse, clip.landmarks, as_jpg=_OPTS.as_jpg)
        timings = {**_PIPE.timings, "write": time.perf_counter() - t1}
        return {"name": name, "status": "done", "frames": len(clip.frames), "face_found": meta["face_found_ratio"],
                "truncated": meta["truncated"], "seconds": time.perf_counter() - t0, "timings": timings}
    except NoFaceError as e:
        return {"name": name, "status": "failed", "error": f"{e} (--no-face center crops the centre instead)",
                "seconds": time.perf_counter() - t0}
    except VideoError as e:  # the message names the file and the problem (a truncated video included)
        return {"name": name, "status": "failed", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:
        tb = traceback.format_exc(limit=3)
        return {"name": name, "status": "failed", "error": f"{src}: {type(e).__name__}: {e}", "trace": tb,
                "seconds": time.perf_counter() - t0}


def _crashed(job) -> dict:
    return {"name": job[1], "status": "failed",
            "error": f"{job[0]}: the worker process died while processing this input (crash or out of memory)"}


def _preview(out: Path, name: str) -> str:
    dest = out / PREVIEWS / (name.replace("/", "__") + ".png")
    try:
        item_preview(dest, load_item(item_dir(out, name)))
    except Exception as e:  # a preview never fails the run
        return f"{name}: preview failed ({type(e).__name__}: {e})"
    return str(dest)


def _stale_truncated(src, dest: Path) -> bool:
    """True for an item that an older version (its meta has no ``frames_declared``) wrote from a video that
    ends before its declared frame count: a truncated file taken for a finished item."""
    if Path(src).is_dir():
        return False
    try:
        meta = load_item(dest).meta
        return "frames_declared" not in meta and int(meta["num_frames"]) < probe(src).num_frames
    except (OSError, ValueError, KeyError, VideoError):  # unreadable meta or source: leave the item alone
        return False


def _log_failure(out: Path, r: dict) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(out / FAILURES, "a") as f:
        f.write(f"{stamp}\t{r['name']}\t{r['error']}\n")


def preprocess(input_root, out, layout: str = "videos", workers: int = 1, preview: int = 0,
               splits_dir=None, opts: Options | None = None, progress: bool = True) -> dict:
    """Preprocess every input of ``layout`` under ``input_root`` into ``out``; returns the summary dict."""
    from tqdm import tqdm

    opts = opts or Options()
    if layout == "ytf" and not opts.as_jpg:  # YouTube Faces items are frame folders, like their source
        opts = replace(opts, as_jpg=True)
    inside = Path(out).resolve()  # an OUT inside INPUT: its own items are not inputs
    jobs = [(src, name) for src, name in layouts.jobs_for(layout, input_root)
            if inside not in Path(src).resolve().parents]
    if not jobs:
        raise MarlinError(f"{input_root}: no inputs of the {layout!r} layout found (see docs/face_pipeline.md)")
    out = output_dir(out)
    check_options(opts.size, opts.no_face)  # a bad option or parser file is one error here, not a failure of
    if opts.parser not in (None, "none", "landmarks"):  # every worker
        make_parser(opts.parser)
    todo = []
    for src, name in jobs:
        dest = item_dir(out, name)
        if is_item(dest) and not opts.allow_truncated and _stale_truncated(src, dest):
            shutil.rmtree(dest)  # made again now: it fails as truncated unless the file was repaired
        if not is_item(dest):
            todo.append((src, name))
    skipped = len(jobs) - len(todo)
    args = [(str(src), name, str(out)) for src, name in todo]
    previews = []
    results = []
    t0 = time.perf_counter()
    bar = tqdm(total=len(args), desc="preprocess", unit="video", disable=not progress)
    try:
        for r in run_jobs(process_one, args, workers, _init, (opts,), _crashed):
            results.append(r)
            if r["status"] == "failed":
                _log_failure(out, r)
                bar.write(f"failed: {r['error']}")
            elif len(previews) < preview:
                previews.append(_preview(out, r["name"]))
            bar.update(1)
    finally:
        bar.close()
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] == "failed"]
    summary = {"input": str(input_root), "layout": layout, "total": len(jobs), "skipped_finished": skipped,
               "done": len(done), "failed": len(failed), "frames": sum(r["frames"] for r in done),
               "truncated_kept": [r["name"] for r in done if r.get("truncated")],
               "seconds": round(time.perf_counter() - t0, 2), "previews": previews,
               "failures": [{k: r[k] for k in ("name", "error", "trace") if k in r} for r in failed]}
    stages = {}
    for r in done:
        for k, v in r["timings"].items():
            stages[k] = stages.get(k, 0.0) + v
    summary["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}  # busy time summed over items
    if layout == "ytf":
        split_files = layouts.find_split_files(input_root, splits_dir)
        if split_files:
            lengths = {name: load_item(item_dir(out, name)).num_frames for _, name in jobs
                       if is_item(item_dir(out, name))}
            summary["splits"] = layouts.write_splits(out, split_files, lengths)
    write_json(out / SUMMARY, summary)
    return summary
