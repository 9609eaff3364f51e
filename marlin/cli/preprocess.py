"""`marlin preprocess INPUT OUT`: detect, track, crop and parse the faces of a dataset."""
from __future__ import annotations

import sys

from .extract import positive_int


def add_arguments(p) -> None:
    p.add_argument("input", help="input folder (or video file / .txt list for --layout videos)")
    p.add_argument("out", help="output folder (one item directory per input; see docs/face_pipeline.md)")
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
    p.add_argument("--splits", default=None, help="folder with the YTF train_set.csv/val_set.csv (ytf layout)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate recorded for frame folders (ytf)")
    p.add_argument("--threads", type=int, default=0,
                   help="threads per worker for background decoding and parallel parsing "
                        "(default 0: CPU cores / workers)")
    p.add_argument("--allow-truncated", action="store_true",
                   help="keep a video whose stream ends before its declared frame count (a file cut short) "
                        "instead of failing it; its meta.json says truncated: true with both counts")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..face.preprocess import FAILURES, Options, preprocess

    import os

    threads = args.threads if args.threads > 0 else max(1, (os.cpu_count() or 1) // max(1, args.workers))
    opts = Options(size=args.size, parser=args.parser, no_face=args.no_face, threads=threads,
                   as_jpg=(args.layout == "ytf"), fps=args.fps, allow_truncated=args.allow_truncated)
    s = preprocess(args.input, args.out, args.layout, args.workers, args.preview, args.splits, opts,
                   progress=not args.quiet)
    print(f"{s['total']} inputs: {s['done']} done, {s['skipped_finished']} already finished, "
          f"{s['failed']} failed; {s['frames']} frames in {s['seconds']} s")
    for name, n in s.get("splits", {}).items():
        print(f"wrote {args.out}/{name} ({n} rows)")
    if s["truncated_kept"]:
        print(f"kept {len(s['truncated_kept'])} truncated videos (--allow-truncated): "
              f"{', '.join(s['truncated_kept'][:5])}", file=sys.stderr)
    if s["failed"]:
        print(f"failures listed in {args.out}/{FAILURES}", file=sys.stderr)
    return 1 if s["failed"] else 0
