"""The detection loop shared by `rdet predict` and `rdet demo`: frames in, records and files out, a line per
image for people, and a clean stop on Ctrl-C (or SIGTERM, SIGHUP) for live streams."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional

from .common import err, out
from .predict_outputs import Outputs, keep_classes, record
from .signals import Stopped
from .tables import show_table
from .text import shown


@dataclass
class Run:
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # one-line errors
    timings: list = field(default_factory=list)  # seconds per image
    interrupted: bool = False

    @property
    def detections(self) -> Counter:
        return Counter(d["class"] for r in self.records for d in r["detections"])


def detect_frames(det, frames: Iterable, outputs: Outputs, score_thr: float, labels: Optional[set] = None,
                  batch_size: int = 1, show: bool = True, json_lines: bool = False, stoppable: bool = False) -> Run:
    """Detect on every frame (Detector.predict_frames); unreadable inputs become records with their error.

    `json_lines` prints each record on stdout as it is made (for streams, which never end); `stoppable` turns
    Ctrl-C into the normal end of the run (live streams) instead of an interruption.
    """
    run = Run()
    try:
        for result in det.predict_frames(frames, score_thr=score_thr, batch_size=batch_size):
            d = None if result.detections is None else keep_classes(result.detections, labels)
            if d is None:
                run.failures.append(result.error)
                err.print(f"[red]skipped[/red] {shown(result.error)}", highlight=False)
            else:
                run.timings.append(result.seconds)
            rec = record(result, d)
            run.records.append(rec)
            outputs.add(result, d, rec)
            if json_lines:
                sys.stdout.write(json.dumps(rec) + "\n")
                sys.stdout.flush()
            if show and d is not None:
                _say(rec, result.seconds)
    except (KeyboardInterrupt, Stopped):  # Ctrl-C, SIGTERM or SIGHUP end a stream, and it is written out
        if not stoppable:
            raise
        run.interrupted = True
    return run


def _say(rec: dict, seconds: float) -> None:
    counts = Counter(d["class"] for d in rec["detections"])
    summary = ", ".join(f"{n} {shown(name)}" for name, n in counts.most_common()) or "nothing"
    where = rec["path"] if rec["frame"] is None else f"{rec['path']} frame {rec['frame']}"
    out.print(f"{shown(where)}: {summary} ({seconds * 1000:.0f} ms)", highlight=False)


def print_summary(model: str, run: Run, score_thr: float, out_dir, compile_seconds: float) -> None:
    """Totals per class (a table only when there is something to list), timing, and what was written."""
    from rich.table import Table

    images = len(run.records) - len(run.failures)
    total = run.detections
    title = f"{model}: {images} image(s), {sum(total.values())} detection(s) scoring above {score_thr:g}"
    table = Table(title=title, title_justify="left")
    table.add_column("class")
    table.add_column("count", justify="right")
    for name, n in total.most_common():
        table.add_row(shown(name), str(n))
    show_table(table, title)
    if run.timings:
        out.print(f"mean time per image: {sum(run.timings) / len(run.timings) * 1000:.0f} ms")
    if compile_seconds:
        out.print(f"torch.compile: {compile_seconds:.1f} s, not counted in the time per image")
    if run.interrupted:
        out.print("stopped by Ctrl-C; everything up to that frame is written")
    if out_dir is not None:
        out.print(f"results written to {shown(out_dir)}/ (annotated images or videos, predictions.json, "
                  "coco_results.json)", highlight=False)
    if run.failures:
        out.print(f"[red]{len(run.failures)} input(s) could not be read[/red]")
