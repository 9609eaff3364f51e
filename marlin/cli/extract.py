"""`marlin extract`: features of many videos, one .npy per video, resumable and robust to bad files."""
from __future__ import annotations

import sys
from pathlib import Path

from ..extract import claim_output  # noqa: F401  (used by the commands that claim an OUT)
from ..parts import add_part_arguments
from ..precision import REQUESTS
from . import add_no_progress


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _device(name: str, backend: str = "torch"):
    """The torch.device of ``--device`` (`marlin.devices.resolve_device`: the CPU for the onnxruntime / openvino
    backends, which run there)."""
    from ..devices import resolve_device

    return resolve_device(name, backend, what="--device")


def add_arguments(p):
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, directories (recursive; mp4/avi/mov/mkv/webm) or .txt files listing paths")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder: OUT/<name>.npy, the name mirroring the inputs' tree (see README)")
    p.add_argument("--model", default=None,
                   help="preset name or official-layout YAML (default: the config stored in a .safetensors "
                        "checkpoint, else marlin_vit_base_ytf)")
    p.add_argument("--checkpoint", default=None,
                   help="weights (.encoder.pt/.full.pt/.ckpt/.safetensors); default: a RANDOMLY initialised model")
    p.add_argument("--keep-seq", action="store_true", help="keep per-token features (n_clips, N, D)")
    p.add_argument("--reduction", choices=["none", "mean", "max"], default="none", help="reduce over clips")
    p.add_argument("--sample-rate", type=positive_int, default=2, help="frames between sampled frames (default 2)")
    p.add_argument("--stride", type=positive_int, default=16, help="frames between window starts (default 16)")
    p.add_argument("--cover-tail", action="store_true", help="add a last window that reaches the end of the video")
    p.add_argument("--crop-face", action="store_true", help="detect, track and crop the face first")
    p.add_argument("--faces", choices=["one", "all"], default="one",
                   help="with --crop-face: one (the principal face, OUT/<name>.npy; default) or all (one output per "
                        "face track: OUT/<name>/face<k>.npy)")
    p.add_argument("--min-track-frames", type=positive_int, default=16, metavar="N",
                   help="--faces all: keep face tracks with at least N frames with the face (default 16)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="clips per encoder call (default: 8 on a GPU; on a CPU as many as hold one 224 clip's 1568 "
                        "tokens, 1 for the presets, which is faster there)")
    p.add_argument("--device", default="auto",
                   help="auto (default: cuda when available, else cpu) | cpu | cuda[:k]; where it ran is listed in "
                        "OUT/features.json (devices), which does not keep another device from adding to OUT")
    p.add_argument("--precision", choices=REQUESTS, default="32",
                   help="32 (float32, default) | bf16 (bfloat16 autocast: ~3x faster on AMX CPUs, pooled features "
                        "at cosine >= 0.9999 of float32) | 16 (float16 autocast, GPUs) | auto (bf16 where the "
                        "device computes it natively, else 32); the one used is recorded in OUT/features.json")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "openvino"], default="torch",
                   help="what runs the encoder: torch (default) | onnxruntime | openvino (CPU runtimes of the onnx / "
                        "openvino extras; the model is exported once per run, or --checkpoint is an onnx / openvino "
                        "folder exported by marlin convert); recorded in OUT/features.json")
    p.add_argument("--overwrite", action="store_true", help="recompute outputs that already exist")
    add_no_progress(p)
    add_part_arguments(p, "extract", "OUT/failed.txt")


def _precision(name: str, device, backend: str = "torch"):
    """The `Precision` of ``--precision`` on ``device`` with ``backend``, resolved once for the whole run;
    MarlinError for one they cannot run (float16 on a CPU, bf16 in onnxruntime), MissingExtraError for a runtime
    that is not installed."""
    from ..errors import MarlinError
    from ..precision import Precision

    try:
        return Precision.resolve(name, device, backend)
    except ValueError as e:
        raise MarlinError(f"--precision {name}: {e}") from None


def merge_parts(out: Path) -> int:
    """`marlin extract --merge --out OUT`: check that OUT holds all N parts of one split, made from the same inputs
    (each part claimed OUT/features.json, so their settings agree), with the output of every video that did not
    fail (`marlin.parts.check_parts`); write OUT/failed.txt of all parts (removed when none failed). Exit 1 when
    videos failed."""
    import json

    from ..extract import FEATURES_RECORD
    from ..parts import check_parts, merge_failures

    record = Path(out) / FEATURES_RECORD
    all_faces = record.is_file() and json.loads(record.read_text()).get("faces") == "all"
    n, parts = check_parts(out, "extract", "extract",
                           lambda name: (Path(out) / (name if all_faces else f"{name}.npy")).exists())
    total, failed = parts[0]["inputs_total"], sum(len(p["failed"]) for p in parts)
    print(f"marlin extract: merged {n} parts: {total - failed} videos with features, {failed} failed -> {out}")
    if merge_failures(out, parts):
        print(f"failures listed in {Path(out) / 'failed.txt'}", file=sys.stderr)
        return 1
    return 0


def run(args) -> int:
    from ..atomic import atomic_dir, check_writable, save_npy, write_json
    from ..batch import run_batch
    from ..errors import MarlinError
    from ..extract import backend_model, face_track_features, features_record, video_features
    from ..models import Marlin
    from ..models.config import encoder_record, model_record
    from ..parts import parse_part, part_record, part_tag, select_part
    from ..video import output_dir, video_names

    if getattr(args, "merge", False):
        if args.inputs:
            raise MarlinError("--merge takes only --out: `marlin extract --merge --out OUT`")
        return merge_parts(args.out)
    if not args.inputs:
        raise MarlinError("no INPUT given: video files, folders or .txt lists (or --merge --out OUT)")
    faces = getattr(args, "faces", "one")
    if faces == "all" and not args.crop_face:
        raise MarlinError("--faces all needs --crop-face (the face tracks come from the face pipeline)")
    jobs = video_names(args.inputs)  # one output name per video; an empty folder or a name clash is an error
    part = parse_part(args.part) if getattr(args, "part", None) else None
    if part is not None:
        jobs, inputs = select_part(jobs, part)
    check_writable(args.out, folder=True)  # created once the model has loaded: a failure leaves no folder
    backend = getattr(args, "backend", "torch")
    device = _device(args.device, backend)
    precision = _precision(args.precision, device, backend)  # a missing runtime ends the run here
    if args.checkpoint and Path(args.checkpoint).is_dir():  # a folder of `marlin convert --to onnx|openvino`
        from ..deploy import load_export

        if backend == "torch" or args.model:
            raise MarlinError(f"{args.checkpoint}: an exported model runs with --backend onnxruntime|openvino and "
                              f"carries its config (no --model)")
        model = load_export(args.checkpoint, backend, precision)  # checked against its record
        if model.full:
            raise MarlinError(f"{args.checkpoint}: this export is the full model (reconstruction); extract with "
                              f"an export of the encoder (marlin convert without its full flag)")
        encoder = model.record["encoder"]  # the identity of the checkpoint it was exported from
    elif args.checkpoint:
        name = args.model or (None if args.checkpoint.endswith(".safetensors") else "marlin_vit_base_ytf")
        model = Marlin.from_file(name, args.checkpoint, full_model=False)
        encoder = encoder_record(name, args.checkpoint)
    else:
        print("marlin extract: no --checkpoint given, using a randomly initialised model", file=sys.stderr)
        model = Marlin.from_config(args.model or "marlin_vit_base_ytf", full_model=False)
        encoder = model_record(model)
    if backend == "torch":
        model.to(device).eval()
    model = backend_model(model, backend, precision)  # exported once for the whole run
    out_dir = output_dir(args.out)
    claim_output(out_dir, features_record(encoder, args.sample_rate, args.stride, args.crop_face, args.keep_seq,
                                          args.reduction, args.cover_tail, precision, faces, backend, device))

    def target(name: str) -> Path:
        return out_dir / (name if faces == "all" else f"{name}.npy")  # --faces all: a folder of face<k>.npy

    def work(path: Path, name: str) -> None:
        if faces == "all":
            tracks = face_track_features(model, path, sample_rate=args.sample_rate, stride=args.stride,
                                         reduction=args.reduction, keep_seq=args.keep_seq,
                                         cover_tail=args.cover_tail, batch_size=args.batch_size,
                                         precision=precision, min_track_frames=args.min_track_frames,
                                         backend=backend)
            with atomic_dir(target(name)) as tmp:  # all of a video's tracks appear at once
                for face, feats in tracks:
                    save_npy(tmp / f"{face}.npy", feats.numpy())
            return
        feats = video_features(model, path, crop_face=args.crop_face, sample_rate=args.sample_rate,
                               stride=args.stride, reduction=args.reduction, keep_seq=args.keep_seq,
                               cover_tail=args.cover_tail, batch_size=args.batch_size, precision=precision,
                               backend=backend)
        save_npy(target(name), feats.numpy())

    result = run_batch(jobs, work, lambda name: target(name).exists() and not args.overwrite, out_dir, "extract",
                       progress=not args.no_progress, debug=args.debug,
                       failures="failed.txt" if part is None else f"failed.{part_tag(part)}.txt")
    if part is not None:
        write_json(out_dir / f"extract.{part_tag(part)}.json", part_record(part, inputs, jobs, result))
    return result.report("extract")
