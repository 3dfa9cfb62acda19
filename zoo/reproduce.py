"""Reproduce the zoo: score every row on a COCO set, compare with its published box AP, and keep a report.

The report directory holds one JSON per row scored (rows/NAME.json) and, after each run, report.md and
report.json. A row already scored there with the same weights digest, annotation digest and images is not run
again, so an interrupted check resumes where it stopped. A row whose weights cannot be obtained is reported and
the others go on.

    rows = reproduce(entries, evaluate, report_dir, ann_sha256, images=5000, tolerance=0.1)

`evaluate(entry, weights_path) -> (metrics, provenance)` runs the model (the CLI supplies it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from retinanet.atomic_write import write_text_atomically

from .checksum import sha256_file
from .errors import ZooError
from .manifest import Entry

OK, OFF, UNAVAILABLE, UNPUBLISHED = "ok", "off", "unavailable", "no published AP"
DEFAULT_TOLERANCE = 0.1  # AP points


@dataclass
class RowResult:
    name: str
    published: float | None  # box AP in percent, as the manifest gives it
    measured: float | None  # box AP in percent
    status: str  # OK, OFF, UNAVAILABLE or UNPUBLISHED
    weights_sha256: str | None = None
    resumed: bool = False  # read back from the report directory, not run again
    message: str | None = None  # why a row is unavailable
    metrics: dict | None = None
    provenance: dict | None = None

    @property
    def difference(self) -> float | None:
        if self.measured is None or self.published is None:
            return None
        return self.measured - self.published

    def to_dict(self) -> dict:
        return {**asdict(self), "difference": self.difference}


def verdict(published: float | None, measured: float, tolerance: float) -> str:
    if published is None:
        return UNPUBLISHED
    return OK if abs(measured - published) <= tolerance + 1e-9 else OFF  # 1e-9: float noise in the subtraction


def _row_file(report_dir: Path, name: str) -> Path:
    return report_dir / "rows" / f"{name}.json"


def _write_json(path: Path, data) -> None:
    """Atomically: a crash never leaves half a row that a resume would trust."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def _scored_before(report_dir: Path, name: str, key: dict) -> dict | None:
    """The row's saved result when it was scored with the same weights, annotations and images; None otherwise
    (also for a file that is not one of ours: it is simply scored again)."""
    try:
        saved = json.loads(_row_file(report_dir, name).read_text())
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON (or too long an integer), too deep
        return None
    if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in key.items()):
        return None
    metrics = saved.get("metrics")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("bbox_mAP"), (int, float)):
        return None
    return saved


def reproduce(entries: list[Entry], evaluate: Callable[[Entry, Path], tuple[dict, dict]], report_dir: Path,
              ann_sha256: str, images: int, tolerance: float = DEFAULT_TOLERANCE,
              weights_for: Callable[[Entry], Path] | None = None,
              on_row: Callable[[RowResult], None] | None = None) -> list[RowResult]:
    """Score each entry (or read it back), compare it with its published AP and write its row file.

    `weights_for(entry)` gives the verified checkpoint path (default: the cache, downloading when needed); a
    ZooError from it, or a CheckpointError from `evaluate` (a file that is not a usable checkpoint), makes the
    row UNAVAILABLE. `on_row` is called as each row is decided."""
    from retinanet.errors import CheckpointError

    if weights_for is None:
        from .weights import ensure_weights

        def weights_for(entry):
            return ensure_weights(entry, quiet=True)

    report_dir = Path(report_dir)
    rows = []
    for entry in entries:
        try:
            weights = weights_for(entry)
        except ZooError as e:
            row = RowResult(entry.name, entry.box_ap, None, UNAVAILABLE, message=str(e))
        else:
            key = {"weights_sha256": sha256_file(weights), "annotations_sha256": ann_sha256, "images": images}
            try:
                row = _scored_row(entry, weights, key, evaluate, report_dir, tolerance)
            except CheckpointError as e:
                row = RowResult(entry.name, entry.box_ap, None, UNAVAILABLE, key["weights_sha256"], message=str(e))
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def _scored_row(entry: Entry, weights: Path, key: dict, evaluate, report_dir: Path, tolerance: float) -> RowResult:
    """The row read back from the report directory, or evaluated now and saved there."""
    saved = _scored_before(report_dir, entry.name, key)
    if saved is not None:
        metrics, provenance, resumed = saved["metrics"], saved.get("provenance"), True
    else:
        metrics, provenance = evaluate(entry, weights)
        resumed = False
        _write_json(_row_file(report_dir, entry.name), {**key, "model": entry.name, "metrics": metrics,
                                                         "provenance": provenance})
    measured = 100 * metrics["bbox_mAP"]
    return RowResult(entry.name, entry.box_ap, measured, verdict(entry.box_ap, measured, tolerance),
                     key["weights_sha256"], resumed, metrics=metrics, provenance=provenance)


def failures(rows: list[RowResult]) -> list[RowResult]:
    """Rows scored and off by more than the tolerance (rows not scored are reported apart, not failed)."""
    return [r for r in rows if r.status == OFF]


def reproduced(rows: list[RowResult]) -> bool | None:
    """The verdict over all rows: None where no row was compared with a published AP (none scored, or none
    published), so that a check that checked nothing never reads as a success."""
    if not any(r.status in (OK, OFF) for r in rows):
        return None
    return not failures(rows)


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def markdown(rows: list[RowResult], tolerance: float, annotations: str, images: int) -> str:
    lines = [f"# Zoo reproduction: box AP on {images} images of {annotations}", "",
             f"Tolerance: {tolerance:g} AP. Measured AP is COCOeval's bbox AP x 100; difference = measured - "
             "published.", "",
             "| model | published | measured | difference | status | weights sha256 |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        status = r.status + (" (resumed)" if r.resumed else "") + (f": {r.message}" if r.message else "")
        lines.append(f"| {r.name} | {_fmt(r.published, '.1f')} | {_fmt(r.measured, '.2f')} | "
                     f"{_fmt(r.difference, '+.2f')} | {status} | {r.weights_sha256 or '-'} |")
    bad, unscored = failures(rows), [r.name for r in rows if r.status == UNAVAILABLE]
    lines.append("")
    verdict_line = {None: "No row was compared with a published AP.", True: "Every row scored reproduced.",
                    False: f"Not reproduced: {', '.join(r.name for r in bad)}."}
    lines.append(verdict_line[reproduced(rows)])
    if unscored:
        lines.append(f"Not scored (weights unavailable): {', '.join(unscored)}.")
    return "\n".join(lines) + "\n"


def write_report(report_dir: Path, rows: list[RowResult], tolerance: float, annotations: str, ann_sha256: str,
                 images: int, provenance: dict | None = None) -> tuple[Path, Path]:
    """report.md and report.json in `report_dir` (`provenance`: what ran the check; each row has its own);
    returns their paths."""
    report_dir = Path(report_dir)
    md, js = report_dir / "report.md", report_dir / "report.json"
    report_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomically(md, markdown(rows, tolerance, annotations, images))
    _write_json(js, {"tolerance": tolerance, "annotations": annotations, "annotations_sha256": ann_sha256,
                     "images": images, "reproduced": reproduced(rows), "rows": [r.to_dict() for r in rows],
                     "provenance": provenance})
    return md, js
