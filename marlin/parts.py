"""Splitting a batch job into parts that run on many machines without coordination (`marlin preprocess --part`,
`marlin extract --part`, `marlin predict --part`): every input goes to the part a stable hash of its output name
picks; `check_parts` checks a split before its parts are merged (`--merge`)."""
from __future__ import annotations

import hashlib

from .errors import MarlinError


def part_of(name: str, parts: int) -> int:
    """The part (0 .. parts-1) of the input with relative item name ``name``: a hash of the name, so every
    machine puts every input in the same part whatever order it lists them in."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % parts


def parse_part(text: str) -> tuple[int, int]:
    """"i/n" (0 <= i < n, e.g. ``$SLURM_ARRAY_TASK_ID/8``) -> (i, n); a MarlinError otherwise."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise MarlinError(f"--part {text!r}: expected i/N with integers, e.g. 0/8") from None
    if not (n >= 1 and 0 <= i < n):
        raise MarlinError(f"--part {text!r}: need 0 <= i < N (parts are numbered from 0, like Slurm array ids)")
    return i, n


def part_tag(part: tuple[int, int]) -> str:
    """``part-0003-of-0008``: the tag of a part's own files."""
    return f"part-{part[0]:04d}-of-{part[1]:04d}"


def names_digest(names) -> str:
    """A short digest of a set of output names: parts of one split must come from the same inputs."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]


def select_part(jobs: list, part: tuple[int, int]) -> tuple[list, dict]:
    """The (input, name) pairs of ``jobs`` in ``part``, and what the part's record says of all inputs (count and
    digest of every name, so `check_parts` sees parts made from different inputs). Names come from all inputs
    first, so every part names every video alike."""
    inputs = {"inputs_total": len(jobs), "inputs_digest": names_digest(name for _, name in jobs)}
    return [(path, name) for path, name in jobs if part_of(name, part[1]) == part[0]], inputs


def part_record(part: tuple[int, int], inputs: dict, jobs: list, result) -> dict:
    """The record a batch command's part writes beside its outputs (`select_part`'s ``inputs``, the part's
    names, and what the run's `marlin.batch.BatchResult` did)."""
    return {"part": list(part), **inputs, "names": [name for _, name in jobs], "failed": result.failed_names,
            "done": result.written, "skipped": result.skipped}


def check_parts(out, stem: str, command: str, exists) -> tuple[int, list[dict]]:
    """The part records ``OUT/<stem>.part-*-of-*.json`` of a batch command, checked: all N parts of one split,
    made from the same inputs, every input listed once and ``exists(name)`` for every one that did not fail.
    Returns (N, records); a MarlinError names what is wrong (`marlin extract --merge`, `marlin predict --merge`)."""
    import json
    from pathlib import Path

    found = sorted(Path(out).glob(f"{stem}.part-*-of-*.json"))
    if not found:
        raise MarlinError(f"{out}: no part records ({stem}.part-*-of-*.json) to merge: run `marlin {command} ... "
                          f"--part i/N --out {out}` first")
    try:
        parts = {f: json.loads(f.read_text()) for f in found}
    except (OSError, ValueError) as e:
        raise MarlinError(f"{out}: unreadable part record ({e})") from None
    counts = {p["part"][1] for p in parts.values()}
    if len(counts) > 1:
        raise MarlinError(f"{out}: parts of different splits ({', '.join(f'of {n}' for n in sorted(counts))}): "
                          f"remove the records of the old split")
    n = counts.pop()
    missing = sorted(set(range(n)) - {p["part"][0] for p in parts.values()})
    if missing:
        raise MarlinError(f"{out}: parts {', '.join(map(str, missing))} of {n} are missing (no "
                          f"{stem}.{part_tag((missing[0], n))}.json): run them before merging")
    (first_file, first), *rest = parts.items()
    for f, p in rest:
        if (p["inputs_total"], p["inputs_digest"]) != (first["inputs_total"], first["inputs_digest"]):
            raise MarlinError(f"{out}: {f.name} and {first_file.name} were made from different inputs "
                              f"({p['inputs_total']} vs {first['inputs_total']} videos): redo the odd parts")
    names = [name for p in parts.values() for name in p["names"]]
    failed = {name for p in parts.values() for name in p["failed"]}
    absent = [name for name in names if name not in failed and not exists(name)]
    if len(names) != first["inputs_total"] or absent:
        raise MarlinError(f"{out}: the parts list {len(names)} of {first['inputs_total']} videos"
                          + (f", and {len(absent)} outputs are missing (first {absent[0]})" if absent else "")
                          + ": rerun the parts")
    return n, list(parts.values())


def merge_failures(out, parts: list[dict], failures: str = "failed.txt") -> str:
    """Write the parts' failure lists (``failed.<part tag>.txt``) as one ``OUT/<failures>`` (removed when none
    failed); returns its text."""
    from pathlib import Path

    from .atomic import write_text

    logs = [Path(out) / f"failed.{part_tag(tuple(p['part']))}.txt" for p in parts]
    text = "".join(log.read_text() for log in logs if log.is_file())
    if text:
        write_text(Path(out) / failures, text)
    else:
        (Path(out) / failures).unlink(missing_ok=True)
    return text


def add_part_arguments(p, command: str, merge_writes: str) -> None:
    """``--part I/N`` and ``--merge`` of a batch command that writes ``OUT/<command>.part-I-of-N.json`` per part;
    ``merge_writes``: what the merge writes."""
    p.add_argument("--part", metavar="I/N", default=None,
                   help="run part I of N (0 <= I < N, e.g. $SLURM_ARRAY_TASK_ID/8): the inputs whose output name "
                        "hashes to it (the hash of marlin preprocess / extract / predict --part); parts share OUT, each "
                        f"with its own record OUT/{command}.part-I-of-N.json; then --merge")
    p.add_argument("--merge", action="store_true",
                   help=f"`marlin {command} --merge --out OUT`: check that all N parts are in OUT, made from the same "
                        f"inputs, with every input done or listed as failed; write {merge_writes} of all parts")
