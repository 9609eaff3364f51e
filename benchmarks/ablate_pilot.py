"""The pilot of the 14x14 evidence run (docs/ablations.md, "Pilot"): at one seed, grow the pretraining budget of
the MARLIN arm (Fasking + AT, `ablate14_cpu`) until it both reconstructs clearly better than the mean-patch
baseline and beats the untrained encoder on expression and manipulated with intervals above zero.

    python benchmarks/ablate_pilot.py --out OUT [--budgets 500 1000 2000] [--parallel 2]
        [--record docs/ablations/2026-12-07/pilot]

Each budget B is one `marlin ablate ratio --ratios "[0.9]" --steps B --seeds 1` (the base config's arm, ratio 0.9,
plus the untrained floor) in OUT/b<B>, with the protocol's world and probe settings; `--parallel` budgets run at
once, each with cores / parallel threads. Every step resumes: `marlin ablate` keeps finished arms and checkpoints,
and the evaluation below is recomputed from the runs' files. The ladder stops after the first round of budgets in
which one meets both criteria (the smallest such budget is the pilot's answer).

Per budget (written to OUT/pilot.json and OUT/pilot.md, and with --record the small records of each finished
budget: the two arms' result.json, pretrained.json, a SHA-256 of their features and the evaluation):
- reconstruction of the first 40 test clips of world 1 (`marlin.reconstruct.reconstruct_clip`, the pretraining
  loss beside the mean-patch baseline) under the arm's own masks (fasking, 0.9, seed = clip index) and, for
  reference only, random masks;
- MARLIN - untrained per task (`marlin.apps.ablate.summarize` with the floor as reference, 95 % paired bootstrap).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

WORLD = {"num_items": 500, "test_items": 400}  # the protocol's worlds (smaller ones only for a smoke test)
RECON_CLIPS = 40
CLEAR = 0.9  # "clearly better": mean loss at most 0.9 x the baseline's, and below it on at least 90 % of clips
PART_TASKS = ("expression", "manipulated")


def ablate_command(out: Path, steps: int, num_items: int, test_items: int) -> list[str]:
    return [sys.executable, "-m", "marlin.cli", "ablate", "ratio", "--ratios", "[0.9]", "--ratio-reference", "0.9",
            "--steps", str(steps), "--seeds", "1", "--out", str(out), "--jobs", "1", "--quiet",
            "--num-items", str(num_items), "--test-items", str(test_items), "--readout-pool", "4", "--frames", "16"]


def _runs(out: Path) -> tuple[Path, Path]:
    marlin = [p for p in (out / "runs").glob("fasking_r0.9_at_*/seed0") if (p / "result.json").is_file()]
    floor = [p for p in (out / "runs").glob("untrained_*/seed0") if (p / "result.json").is_file()]
    if len(marlin) != 1 or len(floor) != 1:
        raise RuntimeError(f"{out}: expected one finished MARLIN arm and one floor, found {marlin} / {floor}")
    return marlin[0], floor[0]


def reconstruction(run: Path, test_dir: Path) -> dict:
    """Mean loss and mean-patch baseline over the first RECON_CLIPS test items, per mask strategy."""
    import numpy as np

    from marlin.data.layout import load_item
    from marlin.reconstruct import clip_mask, load_full_model, reconstruct_clip
    from marlin.synth.dataset import item_id

    export = next((run / "pretrain" / "export").glob("*.safetensors"))
    model, _ = load_full_model(export)
    cfg = model.config
    count = len([p for p in test_dir.iterdir() if p.is_dir() and (p / "meta.json").is_file()])
    items = [load_item(test_dir / item_id(k)) for k in range(min(RECON_CLIPS, count))]  # the probes' test clips
    out = {}
    for strategy in ("fasking", "random"):
        loss, base = [], []
        for k, item in enumerate(items):
            idx = list(range(cfg.n_frames))
            frames, parse = item.read_frames(idx), item.read_parse(idx)
            mask = clip_mask(strategy, cfg.grid, 0.9, k, parse, cfg.patch_size, cfg.tubelet_size)
            r = reconstruct_clip(model, frames, mask, parse)
            loss.append(r.loss)
            base.append(r.baseline_loss)
        loss, base = np.array(loss), np.array(base)
        out[strategy] = {"clips": len(items), "loss": float(loss.mean()), "baseline": float(base.mean()),
                         "ratio": float(loss.mean() / base.mean()), "share_below": float((loss < base).mean())}
    return out


def against_floor(marlin: Path, floor: Path) -> dict:
    from marlin.apps.ablate import RANDOM, Arm, record_tasks, summarize

    rec_m, rec_f = (json.loads((p / "result.json").read_text()) for p in (marlin, floor))
    tasks = record_tasks(rec_m)
    s = summarize("pilot", [Arm("MARLIN", {})], RANDOM,
                  {"MARLIN": {0: (rec_m, marlin)}, RANDOM: {0: (rec_f, floor)}}, tasks, 1000)
    return {t: {"marlin": s["rows"]["MARLIN"][t]["mean"], "untrained": s["rows"][RANDOM][t]["mean"],
                "delta": s["rows"]["MARLIN"][t]["delta"]["mean"],
                "interval": s["rows"]["MARLIN"][t]["delta"]["interval_pooled"]} for t in tasks}


def evaluate(out: Path, steps: int) -> dict:
    marlin, floor = _runs(out)
    rec = json.loads((marlin / "result.json").read_text())
    recon = reconstruction(marlin, out / "data_test")
    probes = against_floor(marlin, floor)
    f = recon["fasking"]
    recon_ok = f["ratio"] <= CLEAR and f["share_below"] >= CLEAR
    probe_ok = all(probes[t]["interval"][0] > 0 for t in PART_TASKS)
    return {"steps": steps, "pretraining_minutes": rec["pretraining"]["minutes"], "seconds": rec.get("seconds"),
            "threads": rec["pretraining"].get("threads"), "final_rec_loss": rec["pretraining"]["final_rec_loss"],
            "reconstruction": recon, "against_untrained": probes, "reconstructs_clearly": recon_ok,
            "beats_untrained_on_parts": probe_ok, "passes": recon_ok and probe_ok,
            "runs": {"marlin": str(marlin.relative_to(out.parent)), "untrained": str(floor.relative_to(out.parent))}}


def keep_records(result: dict, dest: Path, base: Path) -> None:
    """The small files of a finished budget, for the repository (``result``'s run folders are relative to
    ``base``, the pilot's OUT)."""
    from marlin.atomic import write_json

    dest.mkdir(parents=True, exist_ok=True)
    for name, run in result["runs"].items():
        run = base / run
        shutil.copyfile(run / "result.json", dest / f"{name}_result.json")
        if (run / "pretrain" / "pretrained.json").is_file():
            shutil.copyfile(run / "pretrain" / "pretrained.json", dest / f"{name}_pretrained.json")
        if (run / "pretrain" / "history.csv").is_file():
            shutil.copyfile(run / "pretrain" / "history.csv", dest / f"{name}_history.csv")
        digest = hashlib.sha256((run / "features.npy").read_bytes()).hexdigest()
        (dest / f"{name}_features.sha256").write_text(f"{digest}  features.npy\n")
    write_json(dest / "evaluation.json", result)


def table(results: list[dict]) -> list[str]:
    lines = ["| iterations | pretraining (min) | fasking-mask loss / mean-patch (share of clips below) | random-mask "
             "loss / mean-patch | " + " | ".join(f"{t} MARLIN − untrained" for t in PART_TASKS)
             + " | appearance | action | passes |", "|---|---|---|---|" + "---|" * len(PART_TASKS) + "---|---|---|"]
    for r in results:
        f, q = r["reconstruction"]["fasking"], r["reconstruction"]["random"]
        cells = []
        for t in (*PART_TASKS, "appearance", "action"):
            a = r["against_untrained"][t]
            cells.append(f"{a['delta']:+.3f} [{a['interval'][0]:+.3f}, {a['interval'][1]:+.3f}]")
        lines.append(f"| {r['steps']} | {r['pretraining_minutes']:.1f} | {f['loss']:.4f} / {f['baseline']:.4f} = "
                     f"{f['ratio']:.2f} ({f['share_below']:.0%}) | {q['loss']:.4f} / {q['baseline']:.4f} = "
                     f"{q['ratio']:.2f} | " + " | ".join(cells) + f" | {'yes' if r['passes'] else 'no'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budgets", type=int, nargs="+", default=[500, 1000, 2000])
    ap.add_argument("--parallel", type=int, default=2, help="budgets trained at once")
    ap.add_argument("--record", type=Path, default=None, help="copy each finished budget's small records here")
    ap.add_argument("--num-items", type=int, default=WORLD["num_items"], help=argparse.SUPPRESS)  # smoke tests
    ap.add_argument("--test-items", type=int, default=WORLD["test_items"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    from marlin.atomic import write_json, write_text

    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    results = []
    budgets = list(args.budgets)
    while budgets:
        round_, budgets = budgets[:args.parallel], budgets[args.parallel:]
        t0 = time.perf_counter()
        procs = []
        for steps in round_:
            out = args.out / f"b{steps}"
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / "ablate.log", "a")
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            print(f"[pilot] {steps} iterations -> {out} ({threads} thread(s))", flush=True)
            command = ablate_command(out, steps, args.num_items, args.test_items)
            procs.append((steps, out, subprocess.Popen(command, stdout=log, stderr=log, env=env)))
        for steps, out, p in procs:
            if p.wait() != 0:
                sys.exit(f"[pilot] marlin ablate failed for {steps} iterations: see {out / 'ablate.log'}")
        print(f"[pilot] round {round_} trained in {(time.perf_counter() - t0) / 60:.1f} min", flush=True)
        for steps, out, _ in procs:
            r = evaluate(out, steps)
            results.append(r)
            if args.record:
                keep_records(r, args.record / f"b{steps}", args.out)
            print("\n".join(table([r])[2:]), flush=True)
        write_json(args.out / "pilot.json", {"budgets": args.budgets, "parallel": args.parallel, "results": results})
        write_text(args.out / "pilot.md", "\n".join(table(results)) + "\n")
        if any(r["passes"] for r in results):
            break
    passing = [r["steps"] for r in results if r["passes"]]
    print("\n".join(table(results)))
    answer = min(passing) if passing else f"none of {args.budgets}"
    print(f"\n[pilot] smallest budget meeting both criteria: {answer}")


if __name__ == "__main__":
    main()
