"""`marlin evaluate CHECKPOINT`: metrics of a probed (head.safetensors) or fine-tuned (model.safetensors)
model on a split of its dataset."""
from __future__ import annotations

from . import add_no_progress


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint",
                        help="head.safetensors of `marlin probe` or model.safetensors of `marlin finetune`")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--root", help="dataset root in the same layout (default: the one it was trained on)")
    parser.add_argument("--out", help="folder for eval_<split>.json / .md (default: beside the checkpoint)")
    add_no_progress(parser)


def run(args) -> int:
    from marlin.downstream.evaluate import evaluate_checkpoint
    from marlin.downstream.report import COLUMNS

    data = evaluate_checkpoint(args.checkpoint, args.split, args.root, args.out, progress=not args.no_progress)
    m = data["metrics"]
    print(f"{data['task']['name']} on {args.split} ({m['n']} videos): "
          + ", ".join(f"{c} {m.get(c, float('nan')):.4f}" for c in COLUMNS[data["task"]["kind"]]))
    return 0
