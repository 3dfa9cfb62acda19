"""log.jsonl, the run's JSON Lines log, opened for appending. A run killed mid-write (kill -9, a power cut)
can leave its last line cut off; a resumed run appending after it would glue its first record onto that
fragment and make one line that no JSON reader can parse, so the fragment is dropped first."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

_CHUNK = 1 << 16


def _end_of_last_line(f) -> int:
    """The offset just after the file's last newline (0 when it has none)."""
    end = f.seek(0, os.SEEK_END)
    while end > 0:
        start = max(0, end - _CHUNK)
        f.seek(start)
        cut = f.read(end - start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


def open_for_append(path: Path) -> TextIO:
    """`path` opened to append whole lines: an unfinished last line is removed."""
    try:
        with open(path, "r+b") as f:
            whole = _end_of_last_line(f)
            if whole != f.seek(0, os.SEEK_END):
                f.truncate(whole)
    except FileNotFoundError:
        pass
    return open(path, "a", encoding="utf-8")
