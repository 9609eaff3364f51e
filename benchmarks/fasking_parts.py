"""What each mask strategy hides of each facial part, at the demo's 4x4 token grid and at the paper's 14x14.

For synthetic clips (`marlin.synth.render_item`, faces filling the crop as in the official 1.1x crops), the
official any-pixel membership (`marlin.masking.token_parts`: a token belongs to every group with a pixel in it)
and the pretraining masks (`marlin.masking.make_masks`, as the data pipeline draws them), prints per part:
  tokens   mean share of a clip's tokens that belong to the part (any pixel), and of those the share that lie
           wholly inside it (every pixel of the token's first frame is the part: "pure");
  masked   fraction of the part's tokens masked, per strategy;
  all      fraction of clips in which every token of the part is masked (the part is never seen).

    python benchmarks/fasking_parts.py [--clips 40] [--draws 20] [--ratio 0.9]

With --models NAME=FILE ... (full pretrained models, e.g. `marlin ablate`'s RUN/pretrain/export/*.safetensors)
it also prints, per model and facial part, the reconstruction error (MSE of the pixels in [0, 1]) of the masked
tokens that touch the part, under the same random and tube masks for every model (world 1's clips 0..N-1):
which parts each encoder + decoder can fill in.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from marlin.masking import GROUP_NAMES, STRATEGIES, MaskSpec, make_masks, token_parts
from marlin.synth import render_item

# (label, crop px, patch px): the demo_cpu grid and the paper's 14x14 (224/16, here 112/8 as ablate14_cpu)
GEOMETRIES = (("4x4 (64 px / 16 px, demo_cpu)", 64, 16), ("14x14 (112 px / 8 px, ablate14_cpu)", 112, 8))
PARTS = (0, 1, 2, 3, 4, 5, 6)  # eye_a, eye_b, nose, mouth, hair, skin, background


def part_membership(parse: np.ndarray, patch: int, tubelet: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """(T, S, S) parse -> any-pixel membership (7, T', h, w) and 'pure' membership (every pixel in the group)."""
    from marlin.masking.parts import PART_GROUPS

    first = parse[::tubelet]
    member = token_parts(first, patch)
    t, s = first.shape[0], first.shape[1] // patch
    blocks = first.reshape(t, s, patch, s, patch)
    pure = np.stack([np.isin(blocks, ids).all(axis=(2, 4)) for ids in PART_GROUPS])
    return member, pure


def measure(size: int, patch: int, clips: int, draws: int, ratio: float, seed: int = 0) -> dict:
    """{strategy: {"masked": (7,), "all": (7,)}, "tokens": (7,), "pure": (7,)} averaged over clips and draws."""
    masked = {s: np.zeros(7) for s in STRATEGIES}
    hidden = {s: np.zeros(7) for s in STRATEGIES}
    counted = np.zeros(7)
    tokens, pure_share = np.zeros(7), np.zeros(7)
    g = torch.Generator().manual_seed(seed)
    for k in range(clips):
        clip = render_item(seed, k, 16, size)
        member, pure = part_membership(clip.parse, patch)
        grid = member.shape[1:]
        n = int(np.prod(grid))
        flat = member.reshape(7, n)
        tokens += flat.mean(1)
        pure_share += pure.reshape(7, n).sum(1) / np.maximum(flat.sum(1), 1)
        present = flat.any(1)
        counted += present
        for s in STRATEGIES:
            vis = make_masks(MaskSpec(s, ratio), draws, grid, [member] * draws, g).numpy()  # (draws, N) True = visible
            for p in PARTS:
                if present[p]:
                    m = ~vis[:, flat[p]]  # (draws, tokens of the part)
                    masked[s][p] += m.mean()
                    hidden[s][p] += m.all(1).mean()
    c = np.maximum(counted, 1)
    return {"tokens": tokens / clips, "pure": pure_share / clips,
            **{s: {"masked": masked[s] / c, "all": hidden[s] / c} for s in STRATEGIES}}


def table(label: str, r: dict) -> list[str]:
    head = "| part | tokens (any px) | of which pure | " + " | ".join(f"{s} masked / all" for s in STRATEGIES) + " |"
    lines = [f"### {label}", "", head, "|" + "---|" * (3 + len(STRATEGIES))]
    for p in PARTS:
        cells = " | ".join(f"{r[s]['masked'][p]:.2f} / {r[s]['all'][p]:.2f}" for s in STRATEGIES)
        lines.append(f"| {GROUP_NAMES[p]} | {r['tokens'][p]:.2f} | {r['pure'][p]:.2f} | {cells} |")
    return lines


@torch.no_grad()
def reconstruction_by_part(models: dict, clips: int, ratio: float, strategies=("random", "tube"),
                           seed: int = 0) -> dict:
    """{model: {strategy: (7,) mean squared error of the masked tokens touching each part}} on clips 0..clips-1
    of world 1, the masks drawn once per clip and strategy and shared by every model."""
    from marlin.models import patchify
    from marlin.train.objective import masked_targets

    first = next(m for m in models.values() if m is not None).config
    err = {m: {st: np.zeros(7) for st in strategies} for m in models}
    count = {st: np.zeros(7) for st in strategies}
    g = torch.Generator().manual_seed(seed)
    for k in range(clips):
        clip = render_item(1, k, first.n_frames, first.img_size)
        member, _ = part_membership(clip.parse, first.patch_size, first.tubelet_size)
        x = torch.from_numpy(clip.frames).permute(3, 0, 1, 2)[None].float() / 255  # (1, 3, T, H, W)
        flat = member.reshape(7, -1)
        for st in strategies:
            vis = make_masks(MaskSpec(st, ratio), 1, member.shape[1:], [member], g)  # (1, N) True = visible
            masked = flat[:, ~vis[0].numpy()]  # (7, Nm) membership of the masked tokens, ascending order
            target = masked_targets(x, vis, first.patch_size, first.tubelet_size)[0]  # (Nm, K)
            count[st] += masked.sum(1)
            seen = patchify(x, first.patch_size, first.tubelet_size)[0][vis[0]].mean(0)  # (K,) mean visible patch
            for name, model in models.items():
                pred = seen.expand_as(target) if model is None else model(x, vis)[0].float()
                e = ((pred - target) ** 2).mean(1).numpy()  # (Nm,) per-token MSE
                err[name][st] += (masked * e[None]).sum(1)
    return {m: {st: err[m][st] / np.maximum(count[st], 1) for st in strategies} for m in models}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--draws", type=int, default=20, help="masks drawn per clip and strategy")
    ap.add_argument("--ratio", type=float, default=0.9)
    ap.add_argument("--models", nargs="*", default=[], metavar="NAME=FILE", help="full models to measure "
                    "per-part reconstruction error of (NAME=FILE, FILE: our .safetensors)")
    ap.add_argument("--recon-clips", type=int, default=20)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"mask ratio {a.ratio}, {a.clips} synthetic clips (seed 0, 16 frames), {a.draws} masks per clip and "
          "strategy; 'masked': fraction of a part's tokens masked; 'all': fraction of clips where every token of "
          "the part is masked\n")
    for label, size, patch in GEOMETRIES:
        print("\n".join(table(label, measure(size, patch, a.clips, a.draws, a.ratio))) + "\n")
    if a.models:
        from marlin.models import Marlin

        models = {n: Marlin.from_file(None, f, full_model=True).eval() for n, f in (m.split("=", 1) for m in a.models)}
        models["mean visible patch (no model)"] = None  # the floor: every masked token drawn as the mean patch
        rec = reconstruction_by_part(models, a.recon_clips, a.ratio)
        for st in ("random", "tube"):
            print(f"### reconstruction MSE of the masked tokens touching each part, {st} masks at {a.ratio}, "
                  f"{a.recon_clips} clips of world 1\n")
            print("| model | " + " | ".join(GROUP_NAMES) + " |\n|---|" + "---|" * 7)
            for n in models:
                print(f"| {n} | " + " | ".join(f"{v:.4f}" for v in rec[n][st]) + " |")
            print()
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
