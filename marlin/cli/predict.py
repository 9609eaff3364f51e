"""`marlin predict INPUT... --run RUN --out DIR`: a probed or fine-tuned model's outputs on new videos."""
from __future__ import annotations

from pathlib import Path

from ..parts import add_part_arguments
from ..precision import REQUESTS
from . import add_no_progress
from .extract import positive_int


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, folders (recursive; a folder of preprocessed items gives its items), or .txt "
                        "files listing paths")
    p.add_argument("--run", default=None,
                   help="a `marlin probe` / `marlin finetune` output folder holding one run, or its head.safetensors "
                        "/ model.safetensors")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: predictions.csv, predictions.json, predict.json (the record), videos/")
    p.add_argument("--encoder", default=None,
                   help="probe runs: the encoder weights at another path than recorded (must have the recorded "
                        "SHA-256)")
    p.add_argument("--crop-face", action="store_true", help="raw videos: detect, track and crop the face first")
    p.add_argument("--faces", choices=("one", "all"), default="one",
                   help="with --crop-face: one (the main face) or all (one prediction per face track)")
    p.add_argument("--min-track-frames", type=positive_int, default=16, metavar="N",
                   help="with --faces all: the shortest face track that gets a prediction (default 16 frames)")
    p.add_argument("--per-clip", action="store_true", help="also write per-clip scores in predictions.json")
    p.add_argument("--precision", choices=REQUESTS, default=None,
                   help="encoder precision (default: the run's); the one used is recorded")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="clips per encoder call (default: 8 on a GPU, one preset clip on a CPU)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu) | cpu | cuda[:k]")
    p.add_argument("--overwrite", action="store_true", help="recompute videos already predicted in DIR")
    add_no_progress(p)
    add_part_arguments(p, "predict", "predictions.csv, predictions.json and failed.txt")


def run(args) -> int:
    import sys

    from ..data.layout import input_names
    from ..downstream.predict import Predictor, merge_predictions, predict_videos
    from ..errors import OK, SOME_FAILED, MarlinError
    from ..parts import parse_part
    from .extract import _device, _precision

    if args.merge:
        if args.inputs or args.run or args.part:
            raise MarlinError("--merge takes only --out: `marlin predict --merge --out OUT`")
        predictions, failed = merge_predictions(args.out)
        print(f"marlin predict: merged the parts: {len(predictions)} predictions, {len(failed)} failed -> "
              f"{args.out / 'predictions.csv'}")
        if failed:
            print(f"failures listed in {args.out / 'failed.txt'}", file=sys.stderr)
        return SOME_FAILED if failed else OK
    if not args.inputs or not args.run:
        raise MarlinError("need INPUT... and --run RUN (or --merge --out OUT)")
    if args.faces == "all" and not args.crop_face:
        raise MarlinError("--faces all needs --crop-face: the face pipeline finds the faces")
    part = parse_part(args.part) if args.part is not None else None
    input_names(args.inputs)  # missing inputs and name clashes end here, before the model loads
    device = _device(args.device)
    # resolved once here (float16 on a CPU ends here); none: the run's, resolved by from_run
    precision = _precision(args.precision, device) if args.precision is not None else None
    predictor = Predictor.from_run(args.run, args.encoder, precision, device, args.batch_size)
    _, result = predict_videos(predictor, args.inputs, args.out, args.crop_face, args.faces, args.per_clip,
                               args.overwrite, not args.no_progress, args.min_track_frames, args.debug, part)
    return result.report("predict", "predicted")
