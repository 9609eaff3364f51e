"""Low-noise comparison of encoders and probe readouts on the synthetic world (the tables in docs/demo.md).

    python benchmarks/demo_readouts.py --world marlin_demo/data --held-out marlin_demo/data_test \
        --encoder random:demo_cpu --encoder marlin_demo/pretrain/export/marlin_demo_cpu.safetensors [--layers 2,4]

Probes are closed-form ridge regressions on +-1 targets (one-vs-rest for expression), fitted on the training
split of --world, the penalty chosen on its validation split, and scored on every clip of --held-out (a world
made with another seed: `marlin demo` writes one to OUT/data_test, or `marlin synth OUT --num 1000 --frames 32
--size 64 --seed 1`), so a 1000-clip held-out world gives about +-0.015. Every item is read as the demo reads it:
16-frame windows at --sample-rate covering the whole video (`marlin.downstream.probes.windows`, the shared rule of `marlin.video.windows`). Readouts, from the normed
output of the given blocks: "spatial" (the demo's default: mean and std over the time slots of all windows per
spatial position), "pooled" (mean over tokens and windows) and, for several windows, "spatial-per-window". An
encoder is a checkpoint path or `random:CONFIG` (a randomly initialised encoder of that pretraining config).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from marlin.data import list_items, load_item  # noqa: E402
from marlin.apps.worlds import task_datasets  # noqa: E402
from marlin.downstream.probes import ridge_probe, spatial_readout, video_readout, windows  # noqa: E402
from marlin.downstream.metrics import compute_metrics  # noqa: E402
from marlin.extract import clips_to_tensor  # noqa: E402
from marlin.synth.labels import ACTION, APPEARANCE  # noqa: E402


def load_encoder(spec: str):
    from marlin.models import Marlin
    from marlin.train import pretrain_config

    if spec.startswith("random:"):
        torch.manual_seed(0)
        return Marlin(pretrain_config(spec.split(":", 1)[1]).model, full_model=False)
    return Marlin.from_file(None, spec, full_model=False)


@torch.no_grad()
def features(model, items, layers: list[int], batch: int = 16,
             sample_rate: int = 1) -> dict[tuple[int, str], np.ndarray]:
    """{(layer, readout): (N, F)} over every window of each item (`windows`); layer k = the normed output
    of block k (k = depth: the final features). Readouts: "spatial" = the demo's (`video_readout`), "pooled" =
    the mean over tokens averaged over windows, "spatial-per-window" (several windows only) = each window's
    `spatial_readout`, concatenated."""
    enc, cfg = model.encoder, model.config
    enc.eval()
    out: dict[tuple[int, str], list] = {}
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        wins = [windows(it.num_frames, cfg.n_frames, sample_rate) for it in chunk]
        n_win = len(wins[0])
        if any(len(w) != n_win for w in wins):
            raise ValueError("items need equal frame counts (their per-window readouts are concatenated)")
        # one decode per item: the frames of all its windows in one read, then split into (n_win, L, S, S, 3)
        clips = [it.read_frames([f for w in ws for f in w]) for it, ws in zip(chunk, wins)]
        clips = [c.reshape(n_win, cfg.n_frames, *c.shape[1:]) for c in clips]
        seqs: dict[int, list] = {}
        for w in range(n_win):
            h = enc.embed(clips_to_tensor([c[w] for c in clips]))
            for k, block in enumerate(enc.blocks, 1):
                h = block(h)
                if k in layers:
                    seqs.setdefault(k, []).append(enc.norm(h))       # (B, N, D) per window
        for k, v in seqs.items():
            tokens = torch.stack(v, 1)                              # (B, n_win, N, D)
            parts = {"pooled": tokens.mean((1, 2)),
                     "spatial": torch.stack([video_readout(x, cfg.grid) for x in tokens])}
            if n_win > 1:
                parts["spatial-per-window"] = torch.cat([spatial_readout(x, cfg.grid) for x in v], 1)
            for name, x in parts.items():
                out.setdefault((k, name), []).append(x.numpy())
    return {key: np.concatenate(v) for key, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True, help="synthetic world with train.txt / val.txt (probe fitting)")
    p.add_argument("--held-out", required=True, help="another synthetic world (probe scoring, all clips)")
    p.add_argument("--encoder", action="append", required=True, help="checkpoint or random:CONFIG (repeatable)")
    p.add_argument("--layers", default="", help="blocks to read, comma-separated (default: the last)")
    p.add_argument("--sample-rate", type=int, default=1,
                   help="temporal sample rate of the windows read from each item (the demo's: demo_cpu's, 1)")
    p.add_argument("--per-label", action="store_true", help="also print the AUC of every appearance and action label")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    world = Path(args.world)
    datasets = task_datasets(world, Path(args.held_out), len(list_items(args.held_out)))  # the items adapter
    tasks = {t: ds.task for t, ds in datasets.items()}
    splits = next(iter(datasets.values())).splits
    sets = {"train": splits["train"], "val": splits["val"], "held-out": splits["test"]}
    labels = {s: {t: ds.targets(split) for t, ds in datasets.items()}
              for s, split in zip(sets, ("train", "val", "test"))}
    sets = {s: [load_item(smp.source.parent) for smp in samples] for s, samples in sets.items()}
    print(f"# probes fitted on {len(sets['train'])} clips of {world}, penalty chosen on {len(sets['val'])}, "
          f"scored on {len(sets['held-out'])} clips of {args.held_out}")
    print("| encoder | block | readout | " + " | ".join(f"{t} {k.metric}" for t, k in tasks.items()) + " |")
    print("|---|---|---|" + "---|" * len(tasks))
    for spec in args.encoder:
        model = load_encoder(spec)
        layers = [int(v) for v in args.layers.split(",") if v] or [model.config.encoder_depth]
        feats = {s: features(model, items, layers, sample_rate=args.sample_rate) for s, items in sets.items()}
        for key in feats["train"]:
            row, per_label = [], []
            for t, task in tasks.items():
                scores = ridge_probe(task, *[(feats[s][key], labels[s][t]) for s in ("train", "val", "held-out")])
                y = labels["held-out"][t]
                row.append(compute_metrics(task.kind, scores, y)[task.metric])
                if args.per_label and task.kind == "multilabel":
                    names = APPEARANCE if t == "appearance" else ACTION
                    per_label += [f"{n} {compute_metrics('binary', scores[:, j], y[:, j])['auc']:.3f}"
                                  for j, n in enumerate(names)]
            print(f"| {spec} | {key[0]} | {key[1]} | " + " | ".join(f"{v:.3f}" for v in row) + " |", flush=True)
            if per_label:
                print(f"|   per-label AUC | | | {', '.join(per_label)} | | | |", flush=True)


if __name__ == "__main__":
    main()
