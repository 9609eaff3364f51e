"""The one loop of the batch commands over their inputs (`marlin extract`, `marlin predict`, `marlin
reconstruct`): an input whose output exists is skipped, a bad input is reported, listed in ``OUT/failed.txt`` and
left behind while the run goes on, and the exit code says whether any failed (README, *Errors and exit codes*)."""
from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OK, SOME_FAILED

FAILURES = "failed.txt"


@dataclass
class BatchResult:
    """What a batch run did: inputs written, skipped (already done) and failed ("path: problem")."""

    out: Path
    written: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    failed_names: list[str] = field(default_factory=list)  # the output names of the failed inputs
    failures: str = FAILURES  # the file in ``out`` that lists them

    def report(self, command: str, what: str = "written") -> int:
        """Print the summary line (and where the failures are listed); return the command's exit code."""
        print(f"marlin {command}: {self.written} {what}, {self.skipped} already present, {len(self.failed)} "
              f"failed -> {self.out}")
        if self.failed:
            print(f"failures listed in {self.out / self.failures}", file=sys.stderr)
            return SOME_FAILED
        return OK


def failure_message(path, err: Exception) -> str:
    """One line naming the input and the problem (errors that name their file already are kept as they are)."""
    msg = str(err) if str(err).startswith(str(path)) else f"{path}: {type(err).__name__}: {err}"
    return msg.replace("\n", " ")


def run_batch(jobs: Sequence[tuple[Path, str]], work: Callable[[Path, str], None],
              finished: Callable[[str], bool], out: Path, desc: str, progress: bool = True,
              debug: bool = False, failures: str = FAILURES) -> BatchResult:
    """``work(path, name)`` for every (input, output name) of ``jobs`` whose output is not ``finished(name)``.

    A failing input is reported on stderr and listed in ``out/<failures>`` (removed when a rerun has none); an
    error that is not a bad input (anything but OSError, ValueError, RuntimeError) also prints its traceback, as
    does ``debug``. Ctrl-C, MemoryError and ImportError (a missing extra) end the run."""
    from tqdm.auto import tqdm

    from .atomic import write_text

    result = BatchResult(Path(out), failures=failures)
    bar = tqdm(jobs, desc=desc, unit="video", disable=not progress)
    for path, name in bar:
        if finished(name):
            result.skipped += 1
            continue
        bar.set_postfix_str(name[-40:])
        try:
            work(path, name)
            result.written += 1
        except (KeyboardInterrupt, MemoryError, ImportError):
            raise
        except Exception as e:  # one bad video never ends a run of thousands
            result.failed.append(failure_message(path, e))
            result.failed_names.append(name)
            tqdm.write(f"FAILED {result.failed[-1]}", file=sys.stderr)
            if debug or not isinstance(e, (OSError, ValueError, RuntimeError)):
                traceback.print_exc()  # an unexpected error: a bug to report
    log = result.out / failures
    if result.failed:
        write_text(log, "".join(f"{m}\n" for m in result.failed))
    else:
        log.unlink(missing_ok=True)
    return result
