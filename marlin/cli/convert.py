"""`marlin convert IN OUT --to official|hf|videomae|safetensors|onnx|openvino`: any format the toolkit reads to any
it writes, and deployment exports (`marlin.deploy`).

IN: a checkpoint file (official `.encoder.pt` / `.full.pt` / `.ckpt`, VideoMAE, our `.safetensors`) or a Hugging
Face folder / Hub id (official `ControlNet/marlin_vit_*_ytf` layout, `save_pretrained` folders, transformers
VideoMAE folders). OUT: `NAME.encoder.pt` / `NAME.full.pt` (official), a folder (hf, videomae, onnx, openvino),
a file (safetensors). onnx / openvino write the feature extractor, or with --full the reconstruction, checked
against torch before the folder appears.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import MarlinError

TARGETS = ("official", "hf", "videomae", "safetensors", "onnx", "openvino")
FOLDER_TARGETS = ("hf", "videomae", "onnx", "openvino")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors", ".bin")  # a missing file, not a Hub id


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="checkpoint file, Hugging Face folder or Hub id")
    p.add_argument("output", metavar="OUT", help="NAME.encoder.pt|NAME.full.pt (official), a folder (hf, videomae) "
                                                "or NAME.safetensors; a new folder for onnx / openvino")
    p.add_argument("--to", required=True, choices=TARGETS, help="the format to write")
    p.add_argument("--model", default=None, help="preset name or official-layout YAML, for files that carry no "
                                                 "config (official .pt / .ckpt, VideoMAE checkpoints)")
    p.add_argument("--encoder-only", action="store_true", help="write the encoder only (drop decoder and projection)")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit) of a Hub id")
    p.add_argument("--license", default=None, help="licence field of the model card (--to hf)")
    p.add_argument("--full", action="store_true", help="--to onnx|openvino: export encoder + decoder for "
                                                       "reconstruction (default: the encoder as a feature extractor)")
    p.add_argument("--opset", type=int, default=None, help="--to onnx|openvino: ONNX opset (default 17)")


def read_model(source: str, model: str | None = None, revision: str | None = None):
    """A Marlin from a checkpoint file or a Hugging Face folder / Hub id, with whatever parts it holds."""
    from ..checkpoints import load_file
    from ..models import Marlin

    if not Path(source).exists() and Path(source).suffix.lower() in CHECKPOINT_SUFFIXES:  # not a Hub id
        raise MarlinError(f"{source}: checkpoint file does not exist")
    if Path(source).is_file():
        if revision is not None:
            raise MarlinError(f"{source}: --revision applies to Hub ids only")
        if model is None and not load_file(source).get("__safetensors__"):
            raise MarlinError(f"{source}: this file does not carry its architecture: add --model with a preset name "
                              f"or an official-layout YAML")
        return Marlin.from_file(model, source)
    if model is not None:
        raise MarlinError(f"{source}: --model applies to checkpoint files only (folders carry their config)")
    return Marlin.from_pretrained(source, revision=revision, full=None)


def write_model(model, out: str, to: str, license: str | None = None) -> Path:
    """Write ``model`` to ``out`` in format ``to``."""
    out_path = Path(out)
    if to == "official":
        if not out.endswith((".encoder.pt", ".full.pt")):
            raise MarlinError(f"{out}: --to official writes NAME.encoder.pt (encoder) or NAME.full.pt (full model)")
        if out.endswith(".full.pt") and model.decoder is None:
            raise MarlinError(f"{out}: the input holds only the encoder; write NAME.encoder.pt")
        model.export_official(out_path)
    elif to == "hf":
        model.save_pretrained(out_path, license=license)
    elif to == "videomae":
        model.export_videomae(out_path)
    else:
        model.save(out_path, training=model.training_record)
    return out_path


def _source_record(source: str, model_name: str | None, model) -> dict:
    """The encoder identity an export carries: that of the checkpoint file (what `marlin extract --checkpoint`
    records for it), or the weights' hash for a folder or Hub id."""
    from ..models.config import encoder_record, model_record

    return encoder_record(model_name, source) if Path(source).is_file() else model_record(model)


def run(args: argparse.Namespace) -> int:
    from ..atomic import check_writable

    check_writable(args.output, folder=args.to in FOLDER_TARGETS)  # before reading anything
    deploy = args.to in ("onnx", "openvino")
    if not deploy and (args.full or args.opset is not None):
        raise MarlinError(f"{args.output}: --full and --opset apply to --to onnx|openvino")
    if deploy:
        from ..deploy import OPSET, check_export_out, export, require_backend

        check_export_out(args.output)
        require_backend("onnxruntime" if args.to == "onnx" else "openvino", f"--to {args.to}")  # before loading
        model = read_model(args.input, args.model, args.revision)
        record = export(model, args.output, args.to, full=args.full, opset=args.opset or OPSET,
                        encoder=_source_record(args.input, args.model, model))
        worst = max(record["parity"]["max_abs_diff"].values())
        print(f"wrote {args.output} ({args.to}, opset {record['opset']}, "
              f"{'encoder + decoder' if args.full else 'feature extractor'}; max abs diff to torch {worst:.2g})")
        return 0
    model = read_model(args.input, args.model, args.revision)
    if args.encoder_only and model.decoder is not None:
        from ..models import Marlin

        encoder = Marlin(model.config, full_model=False)
        encoder.encoder.load_state_dict(model.encoder.state_dict())
        encoder.training_record = model.training_record
        model = encoder
    out = write_model(model, args.output, args.to, args.license)
    parts = "encoder + decoder" if model.decoder is not None else "encoder"
    print(f"wrote {out} ({args.to}, {parts})")
    return 0
