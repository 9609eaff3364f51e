"""`marlin synth OUT`: generate a synthetic talking-face dataset with labels."""
from __future__ import annotations

from . import add_no_progress


def add_arguments(parser) -> None:
    parser.add_argument("out", nargs="?", help="output directory (resumable: finished items are kept)")
    parser.add_argument("--out", dest="out_opt", metavar="OUT", help="the output directory, as an option")
    parser.add_argument("--num", type=int, default=200, help="number of clips (default 200)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    parser.add_argument("--size", type=int, default=96, help="side of the square face crops in pixels (default 96)")
    parser.add_argument("--seed", type=int, default=0, help="world seed; item k depends only on it and k")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    parser.add_argument("--raw-videos", action="store_true", help="also write full frames to OUT/raw/<id>.mp4")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--preview", type=int, default=0, metavar="K",
                        help="write PNG sheets (frame, crop, parse, labels) of the first K clips to OUT/preview/")
    add_no_progress(parser)


def run(args) -> int:
    from ..synth import generate_dataset

    if (args.out is None) == (args.out_opt is None):
        raise SystemExit("give the output directory once, as OUT or --out OUT")  # usage: exit code 2
    args.out = args.out or args.out_opt
    paths = generate_dataset(args.out, args.num, frames=args.frames, size=args.size, seed=args.seed,
                             workers=args.workers, raw_videos=args.raw_videos, progress=not args.no_progress,
                             fps=args.fps)
    if args.preview > 0:
        from pathlib import Path

        from ..synth.dataset import item_id
        from ..synth.preview import preview_item

        for k in range(min(args.preview, args.num)):
            png = Path(args.out) / "preview" / f"{item_id(k)}.png"
            preview_item(png, args.seed, k, args.frames, args.size, args.fps)
        print(f"previews in {Path(args.out) / 'preview'}")
    missing = args.num - len(paths)
    print(f"{len(paths)} clips in {args.out} (labels: celebvhq_info.json, labels/*.csv; splits: train/val/test.txt)"
          + (f"; {missing} failed" if missing else ""))
    return 1 if missing else 0
