"""log.jsonl, the run's JSON Lines log, as a resumed run finds it. A run killed mid-write (kill -9, a power
cut) can leave its last line cut off, which the resumed run's first record would be glued onto (a line no JSON
reader parses), and the records of the iterations it trained after its last checkpoint, which the resumed run
trains again and would log a second time. The log is cut back to the checkpoint the run resumes from."""
from __future__ import annotations

import json
from pathlib import Path

from retinanet.atomic_write import write_text_atomically

LOG = "log.jsonl"  # in the run's work dir


def _after(record, done_iters: int) -> bool:
    """Whether a record is of training past `done_iters` iterations (train and diverged records carry
    global_iter; evaluations carry the iteration they were made at)."""
    if not isinstance(record, dict):
        return False
    at = record.get("global_iter", record.get("iter") if record.get("mode") == "val" else None)
    return isinstance(at, int) and at > done_iters


def cut_back_log(path: Path, done_iters: int) -> int:
    """Keep the whole lines of `path` that are not of training past `done_iters` iterations; the number of
    lines dropped. Written atomically: a stop meanwhile leaves the log as it was."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except FileNotFoundError:
        return 0
    *whole, unfinished = lines  # after the last newline: "" or a line cut off
    kept = []
    for line in whole:
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            record = None  # not ours to judge: kept as it is
        if not _after(record, done_iters):
            kept.append(line)
    dropped = len(whole) - len(kept) + (1 if unfinished else 0)
    if dropped:
        write_text_atomically(path, "".join(line + "\n" for line in kept))
    return dropped
