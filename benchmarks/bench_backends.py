"""Extraction backends on this machine (issue 28): torch, onnxruntime and OpenVINO at each precision, against
torch float32 measured in the same run. Prints two tables (docs/performance.md records them):

1. the matmul rate (2048^3) in fp32, bf16 and int8 (`bench_model.MatmulRate`), measured beside every row, best of
   the run;
2. per model (ViT-S/B/L, random weights) and batch: clips/s of each path, the speed-up over torch fp32, the
   achieved GFLOP/s as % of the matmul rate of the same precision (int8 rows: of the int8 rate), and the pooled
   features' max |diff| and min cosine to torch fp32 on the same clips. The paths of a row take turns, best of
   --reps. Paths: torch fp32 and bf16 (`extract_features(precision=)`), torch.compile fp32 (--compile),
   onnxruntime fp32 and int8 (`onnxruntime.quantization.quantize_dynamic` of the exported graph), OpenVINO fp32,
   bf16 (where its CPU plugin computes bf16: AMX or AVX512-BF16) and int8 (the same dynamically quantised graph).
   A path that cannot run here is listed with why.

With --video, also end to end: `extract_video` of that (224x224 cropped) video per backend, seconds per clip.
Every runtime uses torch's thread count (--threads).

    python benchmarks/bench_backends.py [--models S B L] [--batches 1 8] [--reps 3] [--threads 2] [--compile]
        [--video ../shared/fixtures/official/tiny224/cropped01.mp4 [--video-model S|B|L]]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ablate14 import cpu_model  # noqa: E402
from bench_model import NAMES, MatmulRate, encoder_flops  # noqa: E402  (one matmul-rate and FLOP count)

from marlin import Marlin  # noqa: E402
from marlin.deploy import (ExportedModel, export_onnx, resolve_backend_precision, runtime_model,  # noqa: E402
                           runtime_session)
from marlin.precision import Precision, native_bf16  # noqa: E402
from marlin.runtimes import openvino_bf16  # noqa: E402

RATE_OF = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}


EMULATED = "emulated bf16 (no AVX512-BF16 or AMX on this CPU): slower than fp32, and `auto` never picks it"


def _paths(model, onnx_path: Path, int8_path: Path | None, compile_torch: bool) -> dict:
    """name -> (precision, callable clip -> pooled features), or name -> str (why it cannot run here)."""
    paths = {"torch fp32": ("fp32", lambda x: model.extract_features(x, keep_seq=False)),
             "torch bf16": (("bf16", lambda x: model.extract_features(x, keep_seq=False, precision="bf16"))
                            if native_bf16(False) else EMULATED)}
    if compile_torch:
        compiled = torch.compile(model.encoder.extract_features)
        paths["torch.compile fp32"] = ("fp32", lambda x: compiled(x, keep_seq=False))
    record = {"format": "marlin-export/1", "target": "onnx", "parts": "encoder", "config": model.config.to_dict()}

    def runner(backend, path, precision="32"):
        precision = Precision.named(precision)
        run = ExportedModel(record, backend, runtime_session(backend, path, precision), precision)
        return lambda x: run.extract_features(x, keep_seq=False)

    for backend, label in (("onnxruntime", "onnxruntime"), ("openvino", "OpenVINO")):
        try:
            paths[f"{label} fp32"] = ("fp32", runner(backend, onnx_path))
            if backend == "openvino":
                paths[f"{label} bf16"] = (("bf16", runner(backend, onnx_path, "bf16")) if openvino_bf16()
                                          else "the CPU plugin reports no BF16 on this host")
            paths[f"{label} int8"] = ("int8", runner(backend, int8_path)) if int8_path else "quantisation failed"
        except Exception as e:  # a runtime that is missing or refuses a graph: reported, not fatal
            paths.setdefault(f"{label} fp32", f"{type(e).__name__}: {str(e)[:80]}")
    return paths


def _quantize(onnx_path: Path) -> Path | None:
    """The dynamically int8-quantised graph (weights int8 per channel, activations per call), or None."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        out = onnx_path.with_name("model.int8.onnx")
        quantize_dynamic(str(onnx_path), str(out), weight_type=QuantType.QInt8, per_channel=True)
        return out
    except Exception as e:
        print(f"  int8 quantisation failed: {type(e).__name__}: {e}", flush=True)
        return None


def bench_model(name: str, batches, reps: int, rate: MatmulRate, compile_torch: bool) -> list[dict]:
    torch.manual_seed(0)
    model = Marlin.from_config(NAMES[name], full_model=False).eval()
    cfg = model.config
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-backends-") as tmp:
        t0 = time.perf_counter()
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx")
        print(f"  ViT-{name}: exported to ONNX in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        int8_path = _quantize(onnx_path)
        t0 = time.perf_counter()
        paths = _paths(model, onnx_path, int8_path, compile_torch)
        print(f"  ViT-{name}: runtimes ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for batch in batches:
            g = torch.Generator().manual_seed(1)
            x = torch.rand(batch, 3, cfg.n_frames, cfg.img_size, cfg.img_size, generator=g)
            runnable = {k: v for k, v in paths.items() if not isinstance(v, str)}
            outs = {k: fn(x) for k, (_, fn) in runnable.items()}  # warm-up, and the accuracy
            best = dict.fromkeys(runnable, float("inf"))
            for _ in range(reps):  # the paths take turns: a load change hits them all alike
                for k, (_, fn) in runnable.items():
                    t = time.perf_counter()
                    fn(x)
                    best[k] = min(best[k], time.perf_counter() - t)
                rate.measure(reps=2)
            ref = outs["torch fp32"]
            for k, v in paths.items():
                if isinstance(v, str):
                    rows.append({"model": f"ViT-{name}", "batch": batch, "path": k, "skip": v})
                    continue
                gflops = encoder_flops(cfg) * batch / best[k] / 1e9
                peak = rate.peak.get(RATE_OF[v[0]])
                cos = torch.nn.functional.cosine_similarity(outs[k].float(), ref, dim=-1).min().item()
                rows.append({"model": f"ViT-{name}", "batch": batch, "path": k, "clips_s": batch / best[k],
                             "x": best["torch fp32"] / best[k], "pct": 100 * gflops / peak if peak else None,
                             "diff": (outs[k].float() - ref).abs().max().item(), "cos": cos})
            _print_rows(rows[-len(paths):])
    return rows


def _print_rows(rows):
    for r in rows:
        if "skip" in r:
            print(f"| {r['model']} | {r['batch']} | {r['path']} | — | — | — | not run: {r['skip']} |", flush=True)
        else:
            pct = "—" if r["pct"] is None else f"{r['pct']:.0f}%"
            print(f"| {r['model']} | {r['batch']} | {r['path']} | {r['clips_s']:.2f} | {r['x']:.2f}x | "
                  f"{pct} | {r['diff']:.1e} / {r['cos']:.6f} |", flush=True)


def bench_video(video: Path, reps: int, name: str = "B"):
    """End to end: seconds per clip of `extract_video` per backend (random weights)."""
    torch.manual_seed(0)
    model = Marlin.from_config(NAMES[name], full_model=False).eval()
    print(f"\nend to end, ViT-{name}, extract_video({video.name}), best of {reps}:\n")
    print("| backend | precision | s / clip | vs torch fp32 | pooled max abs diff / min cosine |\n"
          "|---|---|---|---|---|")
    ref = model.extract_video(video)
    times = {}
    for backend, precision in (("torch", "32"), ("torch", "auto"), ("onnxruntime", "32"), ("openvino", "32"),
                               ("openvino", "auto")):
        try:
            if backend != "torch":  # the export, once: not part of the timing
                runtime_model(model, backend, Precision.resolve(precision, "cpu", backend))
            best = float("inf")
            for _ in range(reps):
                t = time.perf_counter()
                out = model.extract_video(video, backend=backend, precision=precision)
                best = min(best, time.perf_counter() - t)
        except Exception as e:
            print(f"| {backend} | {precision} | — | — | not run: {type(e).__name__}: {str(e)[:80]} |")
            continue
        times[backend, precision] = best / len(out)
        cos = torch.nn.functional.cosine_similarity(out, ref, dim=-1).min().item()
        resolved = resolve_backend_precision(backend, precision, "cpu")
        print(f"| {backend} | {precision} ({resolved}) | {best / len(out):.3f} | {times['torch', '32'] * len(out) / best:.2f}x | "
              f"{(out - ref).abs().max().item():.1e} / {cos:.6f} |", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=["S", "B", "L"], choices=list(NAMES))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--compile", action="store_true", help="add torch.compile fp32")
    p.add_argument("--matmul-n", type=int, default=2048, help="size of the reference matmul (smaller: a quick check "
                                                               "on a CPU that emulates bf16)")
    p.add_argument("--video", type=Path, default=None, help="also time extract_video end to end")
    p.add_argument("--video-model", default="B", choices=list(NAMES), help="the model of --video (default B)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import platform

    versions = {m: getattr(__import__(m), "__version__", "?") for m in ("torch", "onnxruntime", "openvino")
                if __import__("importlib").util.find_spec(m)}
    print(f"{cpu_model() or platform.machine()}, {args.threads} threads, {versions}, best of {args.reps}",
          flush=True)
    rate = MatmulRate(args.matmul_n, bf16=native_bf16(False))
    rate.measure()
    print("\n| model | batch | path | clips/s | vs torch fp32 | % of its matmul rate | pooled max abs diff / "
          "min cosine to torch fp32 |\n|---|---|---|---|---|---|---|", flush=True)
    for name in args.models:  # --models with no name: the end-to-end table only
        bench_model(name, args.batches, args.reps, rate, args.compile)
    peaks = ", ".join(f"{k} {v:.0f}" for k, v in rate.peak.items())
    print(f"\nmatmul {args.matmul_n}^3, best of the run, GFLOP/s: {peaks}")
    if args.video:
        bench_video(args.video, args.reps, args.video_model)


if __name__ == "__main__":
    main()
