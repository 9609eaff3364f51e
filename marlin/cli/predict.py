"""`marlin predict INPUT... --run RUN --out DIR`: a probed or fine-tuned model's outputs on new videos."""
from __future__ import annotations

from pathlib import Path

from .extract import positive_int


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="video files, folders (recursive; a folder of preprocessed items gives its items), or .txt "
                        "files listing paths")
    p.add_argument("--run", required=True,
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
    p.add_argument("--precision", choices=("32", "bf16", "16", "auto"), default=None,
                   help="encoder precision (default: the run's); the one used is recorded")
    p.add_argument("--batch-size", type=positive_int, default=None, help="clips per forward (default: the run's)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu) | cpu | cuda[:k]")
    p.add_argument("--overwrite", action="store_true", help="recompute videos already predicted in DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..data.layout import input_names
    from ..downstream.predict import Predictor, predict_videos
    from ..errors import MarlinError
    from .extract import _device, _precision

    if args.faces == "all" and not args.crop_face:
        raise MarlinError("--faces all needs --crop-face: the face pipeline finds the faces")
    input_names(args.inputs)  # missing inputs and name clashes end here, before the model loads
    device = _device(args.device)
    if args.precision is not None:
        _precision(args.precision, device)  # float16 on a CPU ends here
    predictor = Predictor.from_run(args.run, args.encoder, args.precision, device, args.batch_size)
    _, result = predict_videos(predictor, args.inputs, args.out, args.crop_face, args.faces, args.per_clip,
                               args.overwrite, not args.no_progress, args.min_track_frames, args.debug)
    return result.report("predict", "predicted")
