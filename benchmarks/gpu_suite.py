"""The GPU benchmark suite behind `benchmarks/gpu_suite.sh` (one command, under 8 minutes on one GPU).

Prints one markdown report:
1. extraction: clips/s, achieved TFLOP/s and MFU of ViT-S/B/L in bf16 at batch 64 (`Marlin.extract_features`,
   FLOPs counted as `bench_model.encoder_flops`); MFU against the GPU's dense bf16 peak (spec table below, by
   device name) and against the bf16 matmul rate measured in the same run (8192^3);
2. pretraining: `bench_pretrain.py` (ours vs the official two-forward loop, same clips/masks/weights, each in
   its own process) for marlin_vit_base in bf16 and fp32: s/iteration and peak memory;
3. the shard loader: `bench_loader.py` (per-core table, and the shard stream with one DataLoader worker per core)
   on a video of the suite's own synthetic world (`marlin synth`: a bare machine needs no data);
4. an FSDP run (`marlin pretrain --strategy fsdp`, 3 iterations of tiny_cpu on every GPU of the machine), its
   losses, exports and checkpoint checked.

`--cpu` runs every part tiny on the CPU (ViT-tiny batch 2, tiny_cpu pretraining, 2 loader items, FSDP over two
gloo processes) to check that the suite runs; its numbers mean nothing. A part that fails is reported as FAILED
in its section and in a last "Failed parts" section, the other parts still run, and the exit status is 1.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

# dense bf16 tensor-core peak TFLOP/s (no sparsity) by device-name fragment, from the vendors' data sheets
PEAK_BF16 = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0,
             "H100": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0, "RTX 4090": 165.0,
             "B200": 2250.0, "GH200": 989.0}


def spec_peak(name: str) -> float | None:
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if key in name:
            return PEAK_BF16[key]
    return None


def matmul_tflops(device, n: int = 8192, reps: int = 10) -> float:
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def extraction(args, device) -> None:
    import torch
    from bench_model import NAMES, encoder_flops

    from marlin.models import Marlin

    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    peak = spec_peak(name) if device.type == "cuda" else None
    measured = matmul_tflops(device, 8192 if device.type == "cuda" else 512, 10 if device.type == "cuda" else 2)
    print(f"\n## Extraction, bf16 autocast, batch {args.batch} ({name}; bf16 matmul 8192^3 measured "
          f"{measured:.0f} TFLOP/s; data-sheet dense peak {peak or 'unknown'} TFLOP/s)\n")
    print("| model | clips/s | TFLOP/s | MFU (data-sheet peak) | of measured matmul rate | peak memory GiB |")
    print("|---|---|---|---|---|---|")
    for key in args.models:
        torch.manual_seed(0)
        if args.cpu:
            from marlin.models import MarlinConfig

            model = Marlin(MarlinConfig(img_size=32, patch_size=16, n_frames=4, tubelet_size=2, encoder_embed_dim=16,
                                        encoder_depth=1, encoder_num_heads=2), full_model=False)
        else:
            model = Marlin.from_config(NAMES.get(key, key), full_model=False)
        model = model.eval().to(device)
        c = model.config
        x = torch.rand(args.batch, 3, c.n_frames, c.img_size, c.img_size, device=device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            model.extract_features(x, keep_seq=False, precision="bf16")
        _sync(device)
        t = time.perf_counter()
        for _ in range(args.reps):
            model.extract_features(x, keep_seq=False, precision="bf16")
        _sync(device)
        sec = (time.perf_counter() - t) / args.reps
        tflops = encoder_flops(c) * args.batch / sec / 1e12
        mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else float("nan")
        mfu = f"{100 * tflops / peak:.0f} %" if peak else "-"
        print(f"| ViT-{key} | {args.batch / sec:.1f} | {tflops:.1f} | {mfu} | {100 * tflops / measured:.0f} % | "
              f"{mem:.1f} |", flush=True)
        del model, x
        if device.type == "cuda":
            torch.cuda.empty_cache()


FAILURES: list[str] = []  # "part: why", printed at the end; any makes the exit status 1


def _fail(part: str, why: str) -> str:
    FAILURES.append(f"{part}: {why}")
    return f"FAILED: {why}"


def _run(cmd: list[str], timeout: float, part: str) -> str:
    """stdout of a command, or "FAILED ..." (recorded in FAILURES) when it fails or times out."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return _fail(part, f"timed out after {timeout:.0f} s: {' '.join(cmd[1:4])} ...")
    if res.returncode:
        last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
        return _fail(part, f"exit status {res.returncode}: {last}")
    return res.stdout


def synth_data(args, tmp: str) -> Path:
    """The suite's own input: a small synthetic talking-face world (`marlin synth`), made once."""
    out = Path(tmp) / "synth"
    if not (out / "train.txt").is_file():
        size, frames = (64, 40) if args.cpu else (224, 64)
        res = _run([sys.executable, "-m", "marlin.cli", "synth", str(out), "--num", "8", "--size", str(size),
                    "--frames", str(frames), "--workers", str(min(8, os.cpu_count() or 1)), "--no-progress"],
                   600, "synth")
        if res.startswith("FAILED"):
            raise RuntimeError(f"marlin synth {res}")
    return out


def pretraining(args) -> None:
    print(f"\n## Pretraining iterations: ours vs the official two-forward loop ({args.preset}, batch "
          f"{args.pretrain_batch})\n")
    for bf16 in (True, False):
        cmd = [sys.executable, str(HERE / "bench_pretrain.py"), "--preset", args.preset, "--batch",
               str(args.pretrain_batch), "--iters", str(args.iters), "--warmup", "2",
               "--device", "cpu" if args.cpu else "cuda"] + (["--bf16"] if bf16 else [])
        out = _run(cmd, 600, f"pretrain {'bf16' if bf16 else 'fp32'}")
        print(f"### {'bf16 autocast' if bf16 else 'fp32'}\n")
        print("\n".join(ln for ln in out.splitlines() if ln.startswith(("|", "#", "FAILED")) or "speed" in ln))
        print(flush=True)


def loader(args, tmp: str) -> None:
    cores = os.cpu_count() or 1
    workers = 2 if args.cpu else max(1, cores - 2)
    video = sorted(synth_data(args, tmp).glob("*/clip.mp4"))[0]
    print(f"\n## Shard loader ({cores} cores; DataLoader with {workers} workers; synthetic face video)\n")
    cmd = [sys.executable, str(HERE / "bench_loader.py"), "--items", "2" if args.cpu else "16", "--clips",
           "8" if args.cpu else "96", "--workers", str(workers), "--video", str(video)] + \
        (["--size", "64"] if args.cpu else [])
    print(_run(cmd, 900, "loader"), flush=True)


def fsdp(args, tmp: str) -> None:
    """`marlin pretrain --strategy fsdp` over every GPU (two gloo processes with --cpu): 3 iterations, finite
    losses in history.csv, a resumable checkpoint and exports that load."""
    import torch

    devices = 2 if args.cpu else max(torch.cuda.device_count(), 1)
    print(f"\n## FSDP run (tiny_cpu, 3 iterations, {devices} {'CPU processes' if args.cpu else 'GPUs'})\n")
    run = Path(tmp) / "fsdp"
    t = time.perf_counter()
    out = _run([sys.executable, "-m", "marlin.cli", "pretrain", "--config", "tiny_cpu", "--data",
                str(synth_data(args, tmp)), "--out", str(run), "--strategy", "fsdp", "--max-steps", "3",
                "--log-every", "1", "--accelerator", "cpu" if args.cpu else "gpu", "--devices", str(devices),
                "--no-progress", "--num-workers", "2"], 600, "fsdp")
    if out.startswith("FAILED"):
        print(out)
        return
    from marlin import Marlin
    from marlin.train.history import read_history

    rows = [r for r in read_history(run / "history.csv") if r["kind"] == "train"]
    losses = [r["rec_loss"] for r in rows]
    if [r["iteration"] for r in rows] != [1, 2, 3] or not all(math.isfinite(x) for x in losses):
        print(_fail("fsdp", f"history.csv: iterations {[r['iteration'] for r in rows]}, rec_loss {losses}"))
        return
    Marlin.from_file(None, next((run / "export").glob("*.safetensors")))
    if not (run / "checkpoints" / "last.ckpt").is_file():
        print(_fail("fsdp", "no checkpoints/last.ckpt"))
        return
    print(f"3 iterations in {time.perf_counter() - t:.0f} s (process start included); rec_loss "
          f"{', '.join(f'{x:.4f}' for x in losses)}; export and checkpoint written")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="tiny CPU run: check that every part runs")
    p.add_argument("--models", nargs="+", default=["S", "B", "L"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--preset", default="marlin_vit_base")
    p.add_argument("--pretrain-batch", type=int, default=16)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--parts", nargs="+", default=["extract", "pretrain", "loader", "fsdp"])
    args = p.parse_args()
    import torch

    if args.cpu:
        args.models, args.batch, args.reps = ["tiny"], 2, 1
        args.preset, args.pretrain_batch, args.iters = "tiny_cpu", 2, 2
    elif not torch.cuda.is_available():
        sys.exit("no CUDA device: run on a GPU machine, or use --cpu to check that the suite runs")
    device = torch.device("cpu" if args.cpu else "cuda")
    t0 = time.perf_counter()
    print(f"# MARLIN GPU suite, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
          f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU (--cpu check run)'}, "
          f"{os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        for part, fn in (("extract", lambda: extraction(args, device)), ("pretrain", lambda: pretraining(args)),
                         ("loader", lambda: loader(args, tmp)), ("fsdp", lambda: fsdp(args, tmp))):
            if part in args.parts:
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - the other parts still run; the exit status says it
                    print(_fail(part, f"{type(e).__name__}: {e}"), flush=True)
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")
    if FAILURES:
        print("\n## Failed parts\n")
        print("\n".join(f"- {f}" for f in FAILURES))
        sys.exit(1)


if __name__ == "__main__":
    main()
