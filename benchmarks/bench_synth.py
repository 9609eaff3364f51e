"""Seconds per synthetic item (``marlin.synth``), this working tree against a reference commit, same run.

The reference's ``marlin/synth/*.py`` are read with ``git show REF:...`` into a temporary package
(``marlin._synth_ref``: it shares everything outside ``synth`` with the working tree, so only the
generator differs). Both are timed in alternating rounds on the same items (the median round is
reported, wall and CPU time: the machine may be shared), single process, and their outputs are compared
array by array first.

    python benchmarks/bench_synth.py [--ref 925db11] [--rounds 5] [--items 10] [--frames 32] [--size 64]
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_reference(commit: str, tmp: Path):
    """The ``marlin.synth`` package of ``commit`` as ``marlin._synth_ref`` (its dataset module)."""
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{commit}:marlin/synth"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    pkg = tmp / "synth_ref"
    pkg.mkdir()
    for n in names:
        if n.endswith(".py"):
            src = subprocess.run(["git", "show", f"{commit}:marlin/synth/{n}"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
            (pkg / n).write_bytes(src)
    import marlin

    spec = importlib.util.spec_from_file_location("marlin._synth_ref", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["marlin._synth_ref"] = mod
    spec.loader.exec_module(mod)
    marlin._synth_ref = mod
    return importlib.import_module("marlin._synth_ref.dataset"), importlib.import_module("marlin._synth_ref.clip")


def _time(fn, ks) -> tuple[float, float]:
    """(wall, CPU) seconds per item of ``fn`` over ``ks``."""
    t0, c0 = time.perf_counter(), time.process_time()
    for k in ks:
        fn(k)
    return (time.perf_counter() - t0) / len(ks), (time.process_time() - c0) / len(ks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="925db11", help="reference commit")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--items", type=int, default=10, help="items per round and implementation")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import cv2
    import numpy as np

    import marlin.synth.clip as new_clip
    import marlin.synth.dataset as new_ds

    cv2.setNumThreads(1)  # as in generate_dataset's worker processes
    F, S, seed = args.frames, args.size, args.seed
    with tempfile.TemporaryDirectory() as tmp:
        ref_ds, ref_clip = load_reference(args.ref, Path(tmp))
        ks = list(range(args.items))
        # the same pictures, or the timing means nothing
        for k in ks:
            a, b = ref_clip.render_item(seed, k, F, S), new_clip.render_item(seed, k, F, S)
            for n in ("frames", "parse", "landmarks", "face_boxes", "head_boxes", "crop_boxes"):
                if not np.array_equal(getattr(a, n), getattr(b, n)):
                    sys.exit(f"item {k}: {n} differs from the reference {args.ref}")
        impls = {"render_item": {args.ref: lambda k: ref_clip.render_item(seed, k, F, S),
                                 "working tree": lambda k: new_clip.render_item(seed, k, F, S)},
                 "make_item": {args.ref: lambda k: ref_ds.make_item(Path(tmp) / "ref", k, F, S, seed),
                               "working tree": lambda k: new_ds.make_item(Path(tmp) / "new", k, F, S, seed)}}
        times = {(what, name): [] for what, d in impls.items() for name in d}
        for r in range(args.rounds):
            order = [args.ref, "working tree"][::1 if r % 2 == 0 else -1]  # alternate who goes first
            for what, d in impls.items():
                for name in order:
                    times[what, name].append(_time(d[name], ks))
    print(f"marlin.synth: seconds per item ({F} frames, {S} px, seed {seed}, {args.items} items x {args.rounds} "
          f"rounds, median; single process; outputs checked equal)")
    head = f"{args.ref + ' (ref)':>18} {'working tree':>14} {'speed-up':>9} {'time saved':>11}"
    print(f"{'stage':<12} {'clock':<5} {head}")
    for what, names in impls.items():
        for i, clock in enumerate(("wall", "CPU")):
            ref, new = (statistics.median(t[i] for t in times[what, n]) for n in names)
            print(f"{what:<12} {clock:<5} {ref:>18.4f} {new:>14.4f} {ref / new:>8.2f}x {1 - new / ref:>10.0%}")


if __name__ == "__main__":
    main()
