"""`marlin preprocess INPUT OUT`: detect, track, crop and parse the faces of a dataset."""
from __future__ import annotations

import sys

from . import add_no_progress
from .extract import positive_int


def add_arguments(p) -> None:
    p.add_argument("input", help="input folder (or video file / .txt list for --layout videos); with --merge: OUT")
    p.add_argument("out", nargs="?", help="output folder (one item directory per input; see docs/face_pipeline.md)")
    p.add_argument("--part", metavar="I/N", default=None,
                   help="process only part I of N (0 <= I < N; by a hash of each input's relative path, the same "
                        "on every machine): one Slurm array task or Kubernetes indexed job per part, into one OUT")
    p.add_argument("--merge", action="store_true",
                   help="`marlin preprocess OUT --merge`: check that all N parts are in OUT, made with the same "
                        "inputs and options, and write the one preprocess_summary.json")
    p.add_argument("--layout", choices=("videos", "ytf", "celebvhq"), default="videos",
                   help="videos: any tree of video files; ytf: frame_images_DB/<person>/<n>/*.jpg; "
                        "celebvhq: downloaded/*.mp4 (default: videos)")
    p.add_argument("--size", type=int, default=224, help="crop side in pixels (default 224)")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default 1)")
    p.add_argument("--preview", type=int, default=0, metavar="K", help="write K PNG preview sheets to OUT/previews")
    p.add_argument("--no-face", choices=("error", "center"), default="error",
                   help="input without any face: error (report and skip, default) or center (centre crop)")
    p.add_argument("--parser", default="landmarks",
                   help="'landmarks' (built in), 'none', or a LaPa parser file (TorchScript .pt or torch.export .pt2)")
    p.add_argument("--seg-every", type=int, default=1, metavar="K",
                   help="run the built-in parser's person segmentation on every K-th frame only, reusing its mask "
                        "while the landmarks stay within 2%% of the crop (faster; changes some hair/background "
                        "pixels, recorded in meta.json; default 1: every frame)")
    p.add_argument("--splits", default=None, help="folder with the YTF train_set.csv/val_set.csv (ytf layout)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate recorded for frame folders (ytf)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads per worker for background decoding and parallel parsing "
                        "(default 0: CPU cores / workers)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="keep a video whose stream ends before its declared frame count (a file cut short) "
                        "instead of failing it; its meta.json says truncated: true with both counts")
    p.add_argument("--faces", choices=("one", "all"), default="one",
                   help="one: the principal face, OUT/<name>/ (default); all: one item per face track, "
                        "OUT/<name>/face<k>/ (docs/face_pipeline.md: how tracks keep their identity)")
    p.add_argument("--min-track-frames", type=positive_int, default=16, metavar="N",
                   help="--faces all: keep tracks with at least N frames with the face (default 16, one clip)")
    add_no_progress(p, "--quiet")


def run(args) -> int:
    import os

    from ..errors import MarlinError
    from ..face.preprocess import Options, merge_parts, part_files, preprocess
    from ..parts import parse_part

    if args.merge:
        if args.out is not None or args.part is not None:
            raise MarlinError("--merge takes only OUT: `marlin preprocess OUT --merge`")
        s = merge_parts(args.input)
        print(f"merged {s['parts']} parts: {s['total']} inputs, {s['done'] + s['skipped_finished']} items, "
              f"{s['failed']} failed; summary in {args.input}/preprocess_summary.json")
        return 1 if s["failed"] else 0
    if args.out is None:
        raise MarlinError("missing OUT: `marlin preprocess INPUT OUT` (or `marlin preprocess OUT --merge`)")
    part = parse_part(args.part) if args.part is not None else None

    threads = args.threads if args.threads > 0 else max(1, (os.cpu_count() or 1) // max(1, args.workers))
    opts = Options(size=args.size, parser=args.parser, no_face=args.no_face, threads=threads,
                   as_jpg=(args.layout == "ytf"), fps=args.fps, allow_truncated=args.allow_truncated,
                   seg_every=args.seg_every, faces=args.faces, min_track_frames=args.min_track_frames)
    s = preprocess(args.input, args.out, args.layout, args.workers, args.preview, args.splits, opts,
                   progress=not args.no_progress, part=part)
    tracks = f" ({s['face_tracks']} face tracks)" if "face_tracks" in s else ""
    print(f"{s['total']} inputs: {s['done']} done{tracks}, {s['skipped_finished']} already finished, "
          f"{s['failed']} failed; {s['frames']} frames in {s['seconds']} s")
    for name, n in s.get("splits", {}).items():
        print(f"wrote {args.out}/{name} ({n} rows)")
    if s["truncated_kept"]:
        print(f"kept {len(s['truncated_kept'])} truncated videos (--allow-truncated): "
              f"{', '.join(s['truncated_kept'][:5])}", file=sys.stderr)
    if s["failed"]:
        print(f"failures listed in {args.out}/{part_files(part)[1]}", file=sys.stderr)
    return 1 if s["failed"] else 0
