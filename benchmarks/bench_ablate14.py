"""Pretraining speed of the 14x14 ablation config (`ablate14_cpu`) on this CPU, as `marlin ablate` runs it.

    python benchmarks/bench_ablate14.py [--steps 60] [--items 64] [--data DIR] [--rounds 1]

Every variant runs in its own process on the same synthetic world (64 items of 112 px unless --data), from the
same seed, for --steps iterations of batch 8, and reports iterations per wall second and per CPU second (the
process's user + system time over the whole `pretrain()` call, so startup and export count). Variants:

- `pretrain, 2 threads`: today's `marlin ablate` arm (`marlin.train.pretrain`, torch's default threads);
- `pretrain, 1 thread`: the same with one thread;
- `2 arms at once, 1 thread each`: two such processes side by side (two seeds), the throughput of the pair;
- `loop, N threads`: the training step alone (`marlin.train.step.train_iteration` on the same clips and masks,
  no Lightning), where the time goes by stage.

Run it with nothing else on the cores, and compare rows of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

CONFIG = "ablate14_cpu"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_pretrain(data: str, out: str, steps: int, threads: int, seed: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from marlin.train import pretrain

    c0, t0 = time.process_time(), time.perf_counter()
    res = pretrain(CONFIG, data, out, max_steps=steps, progress=False, tensorboard=False, mask_picture=False,
                   seed=seed, ckpt_every=10 ** 9)
    return {"iterations": res.iterations, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "fit_wall": res.seconds, "precision": res.precision}


def run_loop(data: str, steps: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from marlin.data.clips import PretrainClips, collate, open_items
    from marlin.models import Critic, Marlin
    from marlin.models.embedding import token_index
    from marlin.train import pretrain_config
    from marlin.train.step import adversarial_loss, critic_update, forward_losses, generator_update

    cfg = pretrain_config(CONFIG)
    c = cfg.model
    torch.manual_seed(0)
    ds = PretrainClips(open_items(data, "train"), c, cfg.mask, cfg.sample_rate, cfg.trainer.seed,
                       cache_mb=cfg.trainer.cache_mb)  # as `PretrainData` makes it
    model, critic = Marlin(c, full_model=True), Critic(c)
    g_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95))
    d_opt = torch.optim.AdamW(critic.parameters(), lr=1e-4, betas=(0.9, 0.95))
    b = cfg.trainer.batch_size
    stages: dict[str, float] = {}
    warm = 5
    c0 = t0 = None
    for it in range(steps + warm):
        if it == warm:
            stages, c0, t0 = {}, time.process_time(), time.perf_counter()
        t = time.perf_counter()

        def tick(name):
            nonlocal t
            now = time.perf_counter()
            stages[name] = stages.get(name, 0.0) + now - t
            t = now

        batch = collate([ds[it * b + j] for j in range(b)])
        tokens = token_index(batch["mask"])
        x = batch["video"].float().div_(255)
        tick("data + masks")
        pred, y, rec = forward_losses(model, x, tokens, cfg)
        tick("generator forward")
        critic_update(critic, d_opt, pred.detach(), y.detach(), cfg, it)
        tick("critic step")
        loss = rec + adversarial_loss(critic, pred, cfg.adv_weight)
        loss.backward()
        tick("generator backward")
        generator_update(model, g_opt, cfg.trainer.grad_clip)
        tick("optimiser")
    return {"iterations": steps, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
            "stages": stages}


def child(argv: list[str]) -> None:
    kind, data, steps, threads, seed = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    if kind == "pretrain":
        with tempfile.TemporaryDirectory() as out:
            r = run_pretrain(data, out, steps, threads, seed)
    else:
        r = run_loop(data, steps, threads)
    print("RESULT " + json.dumps(r), flush=True)


def spawn(kind: str, data: str, steps: int, threads: int, seed: int = 0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--child", kind, data, str(steps), str(threads), str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def collect(p: subprocess.Popen) -> dict:
    out, err = p.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"variant failed:\n{err[-3000:]}")


def make_world(out: Path, items: int) -> str:
    from marlin.synth import generate_dataset

    generate_dataset(out, num=items, frames=16, size=112, seed=0, progress=False)
    return str(out)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--data", default=None, help="a synthetic world at 112 px (default: made in a temp folder)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the variants, alternating, keep the best")
    args = ap.parse_args()

    import torch

    tmp = tempfile.TemporaryDirectory()
    data = args.data or make_world(Path(tmp.name) / "world", args.items)
    cores = os.cpu_count() or 1
    rows: dict[str, list[dict]] = {}
    for _ in range(args.rounds):
        for name, kind, threads in [("pretrain, %d threads" % cores, "pretrain", cores),
                                    ("pretrain, 1 thread", "pretrain", 1),
                                    ("loop, %d threads" % cores, "loop", cores),
                                    ("loop, 1 thread", "loop", 1)]:
            rows.setdefault(name, []).append(collect(spawn(kind, data, args.steps, threads)))
        if cores >= 2:
            t0 = time.perf_counter()
            pair = [spawn("pretrain", data, args.steps, 1, seed) for seed in (0, 1)]
            res = [collect(p) for p in pair]
            rows.setdefault("2 arms at once, 1 thread each", []).append(
                {"iterations": sum(r["iterations"] for r in res), "wall": time.perf_counter() - t0,
                 "cpu": sum(r["cpu"] for r in res)})
    print(f"\nhost: {cpu_model()}, {cores} cores; torch {torch.__version__}; config {CONFIG}, batch 8, "
          f"{args.steps} iterations per arm, best of {args.rounds} round(s)")
    ref = max(rows[f"pretrain, {cores} threads"], key=lambda r: r["iterations"] / r["wall"])
    ref_cpu = ref["iterations"] / ref["cpu"]
    print("\n| variant | iterations / s | iterations / CPU-s | vs today (per CPU-s) |")
    print("|---|---|---|---|")
    for name, rs in rows.items():
        best = max(rs, key=lambda r: r["iterations"] / r["wall"])
        per_cpu = best["iterations"] / best["cpu"]
        print(f"| {name} | {best['iterations'] / best['wall']:.2f} | {per_cpu:.2f} | {per_cpu / ref_cpu:.2f}x |")
    for name, rs in rows.items():
        if "stages" in rs[0]:
            best = max(rs, key=lambda r: r["iterations"] / r["wall"])
            total = sum(best["stages"].values())
            parts = ", ".join(f"{k} {v / best['iterations'] * 1000:.0f} ms ({v / total:.0%})"
                              for k, v in best["stages"].items())
            print(f"\n{name}, per iteration: {parts}")


if __name__ == "__main__":
    main()
