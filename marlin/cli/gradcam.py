"""`marlin gradcam CHECKPOINT VIDEO`: Grad-CAM heat maps (PNG) over the frames of a clip for one output of a
probed or fine-tuned model."""
from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("checkpoint", help="head.safetensors (`marlin probe`) or model.safetensors (`marlin finetune`)")
    parser.add_argument("video", help="face-crop video file, preprocessed item directory or frame directory")
    parser.add_argument("--target", help="label / class name or index to explain (default: the prediction)")
    parser.add_argument("--clips", default="0", help="window indices, comma separated, or 'all' (default 0)")
    parser.add_argument("--out", default="gradcam", help="output folder (default ./gradcam)")
    parser.add_argument("--crop-face", action="store_true", help="crop faces of a raw video first")
    parser.add_argument("--per-frame", action="store_true", help="also write one overlay PNG per frame")


def run(args) -> int:
    from marlin.data.layout import CLIP, is_item
    from marlin.downstream.gradcam import gradcam_clip, overlay_grid
    from marlin.images import save_png
    from marlin.downstream.model import classifier_from_checkpoint
    from marlin.downstream.report import write_json
    from marlin.downstream.sources import eval_clips
    from marlin.downstream.tasks import Task

    model, meta = classifier_from_checkpoint(args.checkpoint)
    task = Task.from_dict(meta["task"])
    video = Path(args.video)
    if is_item(video) and (video / CLIP).is_file():
        video = video / CLIP
    windows = meta["run"].get("windows", {"sample_rate": 2, "stride": 16})
    clips = list(eval_clips(video, model.config.n_frames, model.config.img_size, windows["sample_rate"],
                            windows["stride"], crop_face=args.crop_face))
    wanted = range(len(clips)) if args.clips == "all" else [int(c) for c in args.clips.split(",")]
    bad = [k for k in wanted if not 0 <= k < len(clips)]
    if bad:
        raise ValueError(f"{video}: has {len(clips)} windows, no window {bad[0]}")
    out, stem, summary = Path(args.out), Path(args.video).stem if video.name != CLIP else video.parent.name, []
    for k in wanted:
        res = gradcam_clip(model, task, clips[k], args.target)
        name = f"{stem}_clip{k:03d}_{res['target']}"
        save_png(out / f"{name}.png", overlay_grid(clips[k], res["heat"]))
        if args.per_frame:
            for i in range(len(clips[k])):
                save_png(out / name / f"{i:03d}.png", overlay_grid(clips[k][i:i + 1], res["heat"][i:i + 1]))
        summary.append({"clip": k, "png": str(out / f"{name}.png"), "target": res["target"],
                        "score": res["score"], "logits": res["logits"]})
        print(f"window {k}: {res['target']} (score {res['score']:.3f}) -> {out / f'{name}.png'}")
    write_json(out / f"{stem}_gradcam.json", {"checkpoint": args.checkpoint, "video": str(args.video),
                                              "labels": list(task.labels), "clips": summary})
    return 0
