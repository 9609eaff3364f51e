"""`marlin reconstruct`: what a full checkpoint rebuilds from masked clips; per input OUT/<name>/ with, per clip,
an mp4 and a PNG sheet, and reconstruct.json (the pretraining loss beside a mean-patch baseline's)."""
from __future__ import annotations

from pathlib import Path

from . import add_no_progress
from .extract import positive_int


def mask_ratio(text: str) -> float:
    """argparse type: a mask ratio in [0, 1)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a mask ratio in [0, 1), got {text!r}")
    return value


def add_arguments(p):
    from ..masking import STRATEGIES

    p.add_argument("inputs", nargs="+", metavar="VIDEO|ITEM",
                   help="preprocessed items (folders of `marlin preprocess`/`marlin synth`: clip + parse.npz), face "
                        "crop videos, or with --crop-face any video; folders are searched, .txt files list paths")
    p.add_argument("--checkpoint", required=True,
                   help="a checkpoint WITH the decoder: official *.full.pt, Lightning *.ckpt, a full .safetensors, "
                        "or a Hugging Face folder")
    p.add_argument("--model", default=None,
                   help="preset name or official-layout YAML (default: the config a .safetensors file or folder "
                        "carries, else marlin_vit_base_ytf)")
    p.add_argument("--mask", choices=STRATEGIES, default="fasking",
                   help="mask strategy (default fasking: needs parse maps, from an item or --crop-face)")
    p.add_argument("--ratio", type=mask_ratio, default=0.9, help="fraction of masked tubelets (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask (default 0)")
    p.add_argument("--clips", type=positive_int, default=1,
                   help="reconstruct the first N clips (official windows) of each input (default 1)")
    p.add_argument("--sample-rate", type=positive_int, default=2, help="frames between sampled frames (default 2)")
    p.add_argument("--stride", type=positive_int, default=16, help="frames between window starts (default 16)")
    p.add_argument("--crop-face", action="store_true",
                   help="run the face pipeline (detect, track, crop, parse) on videos first; items are cropped "
                        "already and read as they are")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: OUT/<name>/clipK.mp4, clipK.png, reconstruct.json (names as marlin predict)")
    p.add_argument("--overwrite", action="store_true", help="redo inputs that already have a reconstruct.json")
    add_no_progress(p)


def _check_parse(jobs, strategy: str, crop_face: bool) -> None:
    """Before anything is computed: fasking needs parse maps, from an item's parse.npz or --crop-face."""
    from ..errors import MarlinError
    from ..reconstruct import PARSE_STRATEGIES, item_of, parse_needed

    if strategy not in PARSE_STRATEGIES:
        return
    for path, _ in jobs:
        item = item_of(path)
        if (item is None and not crop_face) or (item is not None and not item.has_parse()):
            raise MarlinError(parse_needed(path, strategy))


def _check_ratio(config, ratio: float) -> None:
    """A ratio that leaves no tubelet visible (a tiny model at 0.9) is refused before any input is read."""
    from ..errors import MarlinError
    from ..masking import MaskSpec

    n = config.num_tokens
    if MaskSpec(ratio=ratio).num_visible(n) < 1:
        raise MarlinError(f"--ratio {ratio}: leaves none of the model's {n} tubelets visible; lower it")


def run(args) -> int:
    from ..errors import require
    from ..reconstruct import RECORD, RUN_RECORD, load_full_model, pretraining_objective, reconstruct_video, run_record
    from ..atomic import check_writable
    from ..batch import run_batch
    from ..data.layout import input_names
    from ..extract import claim_output
    from ..video import output_dir
    from .extract import _device

    jobs = input_names(args.inputs)  # one output name per input; missing inputs and name clashes end here
    _check_parse(jobs, args.mask, args.crop_face)
    if args.crop_face:
        require("marlin.face", "face", "--crop-face")
    check_writable(args.out, folder=True)  # created once the model has loaded: a failure leaves no folder
    device = _device(args.device)
    pipeline = None
    model, checkpoint = load_full_model(args.checkpoint, args.model)
    model.to(device)
    _check_ratio(model.config, args.ratio)
    out_dir = output_dir(args.out)
    claim_output(out_dir, run_record(checkpoint, args.mask, args.ratio, args.seed, args.clips, args.sample_rate,
                                     args.stride, args.crop_face, pretraining_objective(model)),
                 record_name=RUN_RECORD, outputs=RECORD, what="reconstructions")
    if args.crop_face:  # its models load once for all inputs
        from ..face import FacePipeline

        pipeline = FacePipeline(size=model.config.img_size, parser="landmarks")

    rows = []

    def work(path, name):
        record = reconstruct_video(model, path, out_dir / name, args.mask, args.ratio, args.seed, args.clips,
                                   args.sample_rate, args.stride, args.crop_face, checkpoint, pipeline)
        rows.append(f"{name}: loss {record['loss']:.4g}, mean-patch baseline {record['baseline_loss']:.4g}")

    result = run_batch(jobs, work, lambda name: (out_dir / name / RECORD).exists() and not args.overwrite, out_dir,
                       "reconstruct", progress=not args.no_progress, debug=args.debug)
    for row in rows:
        print(row)
    return result.report("reconstruct")
