"""Batch preprocessing of a dataset into the layout of ``marlin.data.layout`` (resumable, parallel).

Finished items (a directory with ``meta.json``) are skipped; each item appears atomically
(``write_item``). A failing input (unreadable, truncated unless ``Options.allow_truncated``, no face) is logged
to ``OUT/failures.log`` and the run goes on. An INPUT without inputs or an unwritable OUT is a MarlinError.

Many machines: ``part=(i, n)`` processes only the inputs whose relative name hashes to part i of n
(:func:`part_of`: the same on every machine, whatever the listing order), writing items into the same OUT and
its own ``preprocess_summary.part-i-of-n.json`` / ``failures.part-i-of-n.log``; :func:`merge_parts` checks that
all n parts are there and were made from the same inputs with the same options, and writes the one summary.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from ..atomic import atomic_dir, temp_name, write_json, write_text
from ..data.layout import is_item, item_dir, load_item, write_item
from ..errors import MarlinError
from ..parts import part_of, part_tag
from ..video import VideoError, output_dir, probe
from . import layouts
from .jobs import run_jobs
from .pipeline import FacePipeline, NoFaceError, check_options, make_parser
from .preview import item_preview

FAILURES = "failures.log"
SUMMARY = "preprocess_summary.json"
RECORD = "preprocess.json"  # what OUT's items were made with (layout, OUTPUT_OPTIONS); checked by every run into OUT
PREVIEWS = "previews"
# options that change the items (threads do not): parts of one dataset must agree on them
OUTPUT_OPTIONS = ("size", "parser", "no_face", "as_jpg", "fps", "allow_truncated", "seg_every", "faces",
                  "min_track_frames")
# options that change the item made from one input (no_face and allow_truncated only decide whether an input
# without a face / a truncated input gets an item, marked in its meta): a rerun into OUT must agree on them
ITEM_OPTIONS = ("size", "parser", "as_jpg", "fps", "seg_every", "faces", "min_track_frames")
# options of --faces all only: left out of the records of --faces one runs (absent = the default), so those stay
# as they were before the option existed
ALL_FACES_OPTIONS = ("faces", "min_track_frames")
FACES_INDEX = "faces.json"  # OUT/<name>/faces.json: the tracks of one video (--faces all); written with them


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
    seg_every: int = 1  # person segmentation every k-th frame (built-in parser; changes hair/background pixels)
    faces: str = "one"  # "one": the principal face (OUT/<name>/); "all": one item per face track (OUT/<name>/face<k>/)
    min_track_frames: int = 16  # --faces all: least frames with the face for a track to get an item


_PIPE: FacePipeline | None = None
_OPTS: Options | None = None


def _init(opts: Options) -> None:
    global _PIPE, _OPTS
    _OPTS = opts
    _PIPE = FacePipeline(opts.size, opts.parser, opts.no_face, opts.num_threads, threads=opts.threads,
                         allow_truncated=opts.allow_truncated, seg_every=opts.seg_every)


def _write_tracks(src, name: str, dest: Path) -> dict:
    """--faces all: every face track of one video as an item ``dest/face<k>/``, all appearing at once with the
    video's FACES_INDEX (a folder without the index is not finished). Returns the job's result fields."""
    clips = _PIPE.run_tracks(src, _OPTS.fps, _OPTS.min_track_frames)
    t1 = time.perf_counter()
    index = []
    with atomic_dir(dest) as tmp:
        for clip in clips:
            face = f"face{clip.meta['track']}"
            write_item(tmp / face, clip.frames, {"name": f"{name}/{face}", **clip.meta}, clip.parse, clip.landmarks,
                       as_jpg=_OPTS.as_jpg)
            index.append({"item": face, **{k: clip.meta[k] for k in ("track", "frame_range", "face_found_ratio")}})
        write_json(tmp / FACES_INDEX, {"source": str(src), "faces": index})
    return {"frames": sum(len(c.frames) for c in clips), "faces": len(clips), "preview": f"{name}/face0",
            "face_found": round(sum(c.meta["face_found_ratio"] for c in clips) / len(clips), 4),
            "truncated": clips[0].meta["truncated"], "timings": {**_PIPE.timings, "write": time.perf_counter() - t1}}


def is_finished(dest: Path, faces: str = "one") -> bool:
    """Whether the output of one input is complete: its item (``--faces one``) or its tracks' folder."""
    return (dest / FACES_INDEX).is_file() if faces == "all" else is_item(dest)


def process_one(job) -> dict:
    """Run the pipeline on one (source, name, out_root) job; never raises."""
    src, name, out = job
    t0 = time.perf_counter()
    dest = item_dir(out, name)
    # --faces one: the crops, encoded while the video is processed
    encoded = None if _OPTS.as_jpg or _OPTS.faces == "all" else temp_name(dest, ".mp4")
    try:
        if _OPTS.faces == "all":
            return {"name": name, "status": "done", **_write_tracks(src, name, dest),
                    "seconds": time.perf_counter() - t0}
        clip = _PIPE.run(src, _OPTS.fps, encode_to=encoded)
        t1 = time.perf_counter()
        meta = {"name": name, **clip.meta}
        write_item(dest, clip.frames, meta, clip.parse, clip.landmarks, as_jpg=_OPTS.as_jpg, encoded=clip.encoded)
        timings = {**_PIPE.timings, "write": time.perf_counter() - t1}
        return {"name": name, "status": "done", "frames": len(clip.frames), "face_found": meta["face_found_ratio"],
                "truncated": meta["truncated"], "seconds": time.perf_counter() - t0, "timings": timings}
    except NoFaceError as e:
        hint = "" if _OPTS.faces == "all" else " (--no-face center crops the centre instead)"
        return {"name": name, "status": "failed", "error": f"{e}{hint}",
                "seconds": time.perf_counter() - t0}
    except VideoError as e:  # the message names the file and the problem (a truncated video included)
        return {"name": name, "status": "failed", "error": str(e), "seconds": time.perf_counter() - t0}
    except Exception as e:
        tb = traceback.format_exc(limit=3)
        return {"name": name, "status": "failed", "error": f"{src}: {type(e).__name__}: {e}", "trace": tb,
                "seconds": time.perf_counter() - t0}
    finally:
        if encoded is not None:
            encoded.unlink(missing_ok=True)


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


def _log_failure(path: Path, r: dict) -> None:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(path, "a") as f:
        f.write(f"{stamp}\t{r['name']}\t{r['error']}\n")


def part_files(part: tuple[int, int] | None) -> tuple[str, str]:
    """(summary, failures log) file names of a part (the plain names for a whole run)."""
    if part is None:
        return SUMMARY, FAILURES
    tag = part_tag(part)
    return f"preprocess_summary.{tag}.json", f"failures.{tag}.log"


def _options(summary: dict) -> dict:
    """The OUTPUT_OPTIONS of a record or summary, with today's defaults for options it predates."""
    defaults = asdict(Options())
    return {k: summary.get("options", {}).get(k, defaults[k]) for k in OUTPUT_OPTIONS}


def _made_with(summary: dict) -> dict:
    """What a record or summary says the items were made with: layout and OUTPUT_OPTIONS."""
    return {"layout": summary.get("layout"), "options": _options(summary)}


def _as_written(made: dict) -> dict:
    """A ``_made_with`` record as RECORD holds it: without the --faces all options on a --faces one run."""
    if made["options"]["faces"] == "all":
        return made
    return {**made, "options": {k: v for k, v in made["options"].items() if k not in ALL_FACES_OPTIONS}}


def _record_differences(a: dict, b: dict, options=OUTPUT_OPTIONS) -> list[str]:
    """The fields (layout, options.<name> of ``options``) in which two records or summaries differ."""
    a, b = _made_with(a), _made_with(b)
    diff = ["layout"] if a["layout"] != b["layout"] else []
    return diff + [f"options.{k}" for k in options if a["options"][k] != b["options"][k]]


def check_faces(opts: Options, layout: str) -> None:
    """MarlinError for a ``faces`` other than "one" / "all", ``min_track_frames`` below 1, or --faces all with
    --no-face center (a centre crop is no face track) or the ytf layout (its split files list one item per
    video)."""
    if opts.faces not in ("one", "all"):
        raise MarlinError(f"--faces must be 'one' or 'all', not {opts.faces!r}")
    if opts.min_track_frames < 1:
        raise MarlinError(f"--min-track-frames must be at least 1, not {opts.min_track_frames}")
    if opts.faces == "all" and opts.no_face == "center":
        raise MarlinError("--faces all keeps face tracks only: --no-face center does not apply (a video without a "
                          "face is reported and skipped)")
    if opts.faces == "all" and layout == "ytf":
        raise MarlinError("--faces all writes OUT/<name>/face<k>/ items, which the ytf split files cannot list: "
                          "use --layout videos (or --faces one)")


def check_record(out: Path, record: dict) -> None:
    """Refuse to add items to ``out`` with other ITEM_OPTIONS than its items were made with (its RECORD, else
    the summary of an earlier whole run); write the RECORD on the first run and after each run. Skipped finished items would otherwise
    mix two kinds of items in one dataset without a word."""
    path = out / RECORD
    source = path if path.is_file() else out / SUMMARY if (out / SUMMARY).is_file() else None
    want = _made_with(record)
    if source is None:
        write_json(path, _as_written(want))
        return
    try:
        have = json.loads(source.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MarlinError(f"{source}: unreadable preprocessing record ({e}); remove it only if every item in "
                          f"{out} was made with the options of this run") from None
    diff = _record_differences(have, want, ITEM_OPTIONS)
    if diff:
        what = "; ".join(f"{k}: {_get(_made_with(have), k)!r} there, {_get(want, k)!r} now" for k in diff)
        raise MarlinError(f"{out}: its items were made with other options ({what}; {source.name}): use another "
                          f"output folder, or this folder's options")
    write_json(path, _as_written(want))  # no_face / allow_truncated as of the latest run


def _inputs_digest(names) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


def preprocess(input_root, out, layout: str = "videos", workers: int = 1, preview: int = 0,
               splits_dir=None, opts: Options | None = None, progress: bool = True,
               part: tuple[int, int] | None = None) -> dict:
    """Preprocess every input of ``layout`` under ``input_root`` into ``out``; returns the summary dict.

    ``part`` (i, n): only the inputs of part i of n (see :func:`part_of`); the summary and failures go to the
    part's own files, and the split files of the ytf layout are written by :func:`merge_parts`."""
    from tqdm import tqdm

    opts = opts or Options()
    if layout == "ytf" and not opts.as_jpg:  # YouTube Faces items are frame folders, like their source
        opts = replace(opts, as_jpg=True)
    inside = Path(out).resolve()  # an OUT inside INPUT: its own items are not inputs
    jobs = [(src, name) for src, name in layouts.jobs_for(layout, input_root)
            if inside not in Path(src).resolve().parents]
    if not jobs:
        raise MarlinError(f"{input_root}: no inputs of the {layout!r} layout found (see docs/face_pipeline.md)")
    record = {"layout": layout, "inputs_total": len(jobs), "inputs_digest": _inputs_digest(n for _, n in jobs),
              "options": {k: v for k, v in asdict(opts).items() if k in OUTPUT_OPTIONS
                          and (opts.faces == "all" or k not in ALL_FACES_OPTIONS)}}
    if part is not None:
        jobs = [(src, name) for src, name in jobs if part_of(name, part[1]) == part[0]]
    summary_name, failures_name = part_files(part)
    out = output_dir(out)
    # a bad option or parser file is one error here, not a failure of every worker
    check_options(opts.size, opts.no_face, opts.seg_every, opts.parser)
    check_faces(opts, layout)
    if opts.parser not in (None, "none", "landmarks"):
        make_parser(opts.parser)
    check_record(out, record)
    todo = []
    for src, name in jobs:
        dest = item_dir(out, name)
        if is_item(dest) and not opts.allow_truncated and _stale_truncated(src, dest):
            shutil.rmtree(dest)  # made again now: it fails as truncated unless the file was repaired
        if not is_finished(dest, opts.faces):
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
                _log_failure(out / failures_name, r)
                bar.write(f"failed: {r['error']}")
            elif len(previews) < preview:
                previews.append(_preview(out, r.get("preview", r["name"])))
            bar.update(1)
    finally:
        bar.close()
    done = [r for r in results if r["status"] == "done"]
    failed = [r for r in results if r["status"] == "failed"]
    summary = {"input": str(input_root), **record, "part": list(part) if part else None,
               "total": len(jobs), "skipped_finished": skipped,
               "done": len(done), "failed": len(failed), "frames": sum(r["frames"] for r in done),
               **({"face_tracks": sum(r["faces"] for r in done)} if opts.faces == "all" else {}),
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
        summary["split_files"] = {k: str(v) for k, v in split_files.items()}
        if split_files and part is None:
            summary["splits"] = _write_splits(out, split_files, [name for _, name in jobs])
    write_json(out / summary_name, summary)
    return summary


def _write_splits(out: Path, split_files: dict, names) -> dict:
    lengths = {name: load_item(item_dir(out, name)).num_frames for name in names if is_item(item_dir(out, name))}
    return layouts.write_splits(out, split_files, lengths)


_SUMMED = ("total", "skipped_finished", "done", "failed", "frames")


def merge_parts(out) -> dict:
    """Check the part summaries in ``out`` (all n parts present, made from the same inputs with the same
    options) and write the one ``preprocess_summary.json`` (and the ytf split files); returns it.

    Raises MarlinError naming the missing parts or the differing fields."""
    out = Path(out)
    found = sorted(out.glob("preprocess_summary.part-*-of-*.json"))
    if not found:
        raise MarlinError(f"{out}: no part summaries (preprocess_summary.part-*-of-*.json) to merge: run "
                          f"`marlin preprocess ... --part i/N` first")
    parts = []
    for f in found:
        try:
            parts.append((f, json.loads(f.read_text())))
        except (OSError, json.JSONDecodeError) as e:
            raise MarlinError(f"{f}: unreadable part summary ({e})") from None
    counts = {tuple(s["part"])[1] for _, s in parts}
    if len(counts) > 1:
        raise MarlinError(f"{out}: parts of different splits ({', '.join(f'of {n}' for n in sorted(counts))}): "
                          f"remove the summaries of the old split")
    n = counts.pop()
    missing = sorted(set(range(n)) - {s["part"][0] for _, s in parts})
    if missing:
        raise MarlinError(f"{out}: parts {', '.join(map(str, missing))} of {n} are missing (no "
                          f"{part_files((missing[0], n))[0]}): run them before merging")
    first_file, first = parts[0]
    for f, s in parts[1:]:
        diff = [k for k in ("inputs_total", "inputs_digest") if s.get(k) != first.get(k)]
        diff += _record_differences(first, s)
        if diff:
            what = "; ".join(f"{k}: {_get(first | _made_with(first), k)!r} in {first_file.name}, "
                             f"{_get(s | _made_with(s), k)!r} in {f.name}"
                             for k in diff)
            raise MarlinError(f"{out}: the parts were made from different inputs or options ({what}): "
                              f"redo the odd parts with the same inputs and options")
    summary = {k: first[k] for k in ("layout", "inputs_total", "inputs_digest")}
    summary |= _as_written({"options": _options(first)})
    summary.update({"input": sorted({s["input"] for _, s in parts}), "parts": n,
                    "part_summaries": [f.name for f, _ in parts]})
    summary.update({k: sum(s[k] for _, s in parts) for k in _SUMMED})
    for k in ("truncated_kept", "previews", "failures"):
        summary[k] = [x for _, s in parts for x in s.get(k, [])]
    summary["seconds"] = round(sum(s["seconds"] for _, s in parts), 2)
    stages = {}
    for _, s in parts:
        for k, v in s.get("stage_seconds", {}).items():
            stages[k] = round(stages.get(k, 0.0) + v, 2)
    summary["stage_seconds"] = stages
    split_files = {k: Path(v) for _, s in parts for k, v in s.get("split_files", {}).items() if Path(v).is_file()}
    if summary["layout"] == "ytf" and split_files:
        from ..data.layout import list_items

        summary["splits"] = _write_splits(out, split_files, [it.name for it in list_items(out)])
    logs = [out / part_files(tuple(s["part"]))[1] for _, s in parts]
    text = "".join(p.read_text() for p in logs if p.is_file())
    if text:
        write_text(out / FAILURES, text)  # one failures log too (the parts' logs stay)
    write_json(out / SUMMARY, summary)
    return summary


def _get(summary: dict, key: str):
    for k in key.split("."):
        summary = summary.get(k) if isinstance(summary, dict) else None
    return summary
