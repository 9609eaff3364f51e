"""Run independent jobs in worker processes so that a crashing job (a native decoder segfault, an
out-of-memory kill) fails only itself: when a worker dies, the jobs it may have held are re-run
one per fresh process, and only the one that crashes again is reported."""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterator, Sequence


def run_jobs(fn: Callable, args: Sequence, workers: int, initializer: Callable, initargs: tuple,
             on_crash: Callable) -> Iterator:
    """Yield ``fn(a)`` for every ``a`` in ``args`` (any order); ``on_crash(a)`` for a job whose process died.

    ``fn``, ``initializer`` and ``on_crash`` must be importable top-level functions (spawned processes).
    """
    if workers <= 1 or len(args) <= 1:
        initializer(*initargs)
        yield from map(fn, args)
        return
    ctx = mp.get_context("spawn")
    pending, suspects = list(args), []
    while pending or suspects:
        batch, n = ([suspects.pop(0)], 1) if suspects else (pending, min(workers, len(pending)))
        if not suspects and batch is pending:
            pending = []
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=initializer, initargs=initargs) as ex:
            futures = {ex.submit(fn, a): a for a in batch}
            finished = set()
            try:
                for f in as_completed(futures):
                    r = f.result()  # BrokenProcessPool when a worker died
                    finished.add(f)
                    yield r
            except BrokenProcessPool:
                left = []
                for f, a in futures.items():
                    if f in finished:
                        continue
                    if f.done() and not f.cancelled() and f.exception() is None:
                        yield f.result()
                    else:
                        left.append(a)
                if n == 1 and len(batch) == 1:
                    yield on_crash(batch[0])
                else:
                    suspects.extend(left)
