"""`marlin evaluate`: metrics of a probe or fine-tuning checkpoint on a split of its dataset (or another
root in the same layout)."""
from __future__ import annotations

from pathlib import Path

from ..atomic import write_json, write_text
from ..checkpoints import CheckpointError
from ..devices import resolve_device
from .config import load_run_config
from .datasets import load_dataset
from .features import run_feature_cache
from .finetune import ClipReader, video_logits
from .linear import predict
from .metrics import compute_metrics
from .model import classifier_from_checkpoint, load_downstream_checkpoint, probe_head
from .probe import cached_features, split_arrays
from .report import COLUMNS, NAMES, fmt_metric
from .runs import report_skipped
from .tasks import Task


def evaluate_checkpoint(path, split: str = "test", root=None, out=None, progress: bool = True) -> dict:
    """Evaluate ``path`` on ``split``; writes eval_<split>.json / .md next to it (or in ``out``)."""
    path = Path(path)
    tensors, meta = load_downstream_checkpoint(path)
    cfg = load_run_config(meta["run"], values={"root": str(root)} if root is not None else None)
    out = Path(out) if out else path.parent
    task = Task.from_dict(meta["task"])
    ds = load_dataset(cfg.dataset, cfg.root, cfg.task, fold=meta.get("fold", 1), **cfg.dataset_options)
    if split not in ds.splits or not ds.splits[split]:
        raise ValueError(f"{cfg.root}: the {split} split has no samples ({ds.summary()})")
    ds.splits = {split: ds.splits[split]}
    report_skipped(out, meta.get("fold", 1), ds.skipped, "samples")
    names = task.labels
    if meta["mode"] == "probe":
        head = probe_head(tensors, path)
        feats, failures = cached_features(cfg, ds, run_feature_cache(cfg), progress, {})
        report_skipped(out, meta.get("fold", 1), failures, "videos")
        x, y = split_arrays(ds, split, feats, meta["reduction"])
        if x.shape[1] != head.in_features:
            raise CheckpointError(f"{path}: the probe head's weight takes {head.in_features} features, the run's encoder "
                                  f"gives {x.shape[1]}")
        logits, kept = predict(head, x), [s for s in ds.splits[split] if s.key in feats]
        metrics = compute_metrics(task.kind, task.scores(logits), y, label_names=names)
    else:
        model, _ = classifier_from_checkpoint(path)
        device = resolve_device(cfg.device)
        model.to(device)
        reader = ClipReader(cfg, Path(cfg.out) / "segments", model.config.n_frames, model.config.img_size)
        logits, y, kept = video_logits(model, ds.splits[split], reader, cfg.batch_size_eval, device, progress)
        report_skipped(out, meta.get("fold", 1), [f"{k}: {v}" for k, v in reader.failures.items()], "videos")
        metrics = compute_metrics(task.kind, task.scores(logits), y, label_names=names)
    videos = [{"key": s.key, "source": str(s.source), "logits": row} for s, row in zip(kept, logits.tolist())]
    data = {"checkpoint": str(path), "split": split, "root": cfg.root, "task": task.to_dict(), "metrics": metrics,
            "videos": videos}  # the per-video logits behind the metrics
    write_json(out / f"eval_{split}.json", data)
    cols = COLUMNS[task.kind]
    md = [f"# Evaluation: {cfg.dataset} / {task.name} ({split}, {metrics['n']} videos)", "",
          f"Checkpoint: `{path}`", "", "| " + " | ".join(NAMES[c] for c in cols) + " |", "|" + "---|" * len(cols),
          "| " + " | ".join(fmt_metric(metrics.get(c)) for c in cols) + " |"]
    write_text(out / f"eval_{split}.md", "\n".join(md) + "\n")
    return data
