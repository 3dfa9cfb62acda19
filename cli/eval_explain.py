"""`rdet eval --per-class / --csv / --plots`: the tables, files and JSON parts that explain one evaluation."""
from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .common import out
from .outputs import output_dir, output_file
from .text import shown


def _pct(v: float | None, spec: str = ".1f") -> str:
    return "n/a" if v is None else format(100 * v, spec)


def per_class_table(rows, title: str) -> Table:
    """Per-class figures in percent, best AP first."""
    from retinanet.evaluation.per_class import by_ap

    table = Table(title=title, title_justify="left")
    for col in ("class", "AP", "AP50", "AP75", "AR100", "#GT"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for r in by_ap(rows):
        table.add_row(shown(r.name), _pct(r.ap), _pct(r.ap50), _pct(r.ap75), _pct(r.ar100), str(r.gt))
    return table


def errors_table(breakdown) -> Table:
    from retinanet.evaluation.error_breakdown import ERROR_TYPES

    table = Table(title=f"Errors at IoU {breakdown.foreground_iou:g} (background below {breakdown.background_iou:g}); "
                        f"AP50 {100 * breakdown.ap50:.1f}", title_justify="left")
    for col in ("error", "count", "AP50 if fixed"):
        table.add_column(col, justify="left" if col == "error" else "right")
    for kind in ERROR_TYPES:
        gain = breakdown.gains[kind]
        table.add_row(kind, str(breakdown.counts[kind]), "n/a" if gain is None else f"+{100 * gain:.2f}")
    return table


def check_outputs(csv_file: Path | None, plots: Path | None, inputs=()) -> None:
    """Bad output paths (a directory for --csv, a file for --plots, either under a file or read-only, --csv
    naming one of the `inputs`), said before any work."""
    if csv_file is not None:
        output_file(csv_file, "--csv", inputs)
    if plots is not None:
        output_dir(plots, "--plots")


def explain(coco_set, results, scores, *, per_class: bool, csv_file: Path | None, plots: Path | None,
            heading: str, show: bool) -> dict:
    """Print and write what was asked for; returns the JSON parts ({} when nothing was)."""
    from retinanet.evaluation.analysis import analyse, class_figures, write_plots
    from retinanet.atomic_write import write_text_atomically
    from retinanet.evaluation.per_class import by_ap, csv_text

    if not (per_class or csv_file or plots):
        return {}
    if plots is not None:
        found = analyse(coco_set, results, scores, backend=scores.backend)
        rows = found.per_class
        paths = write_plots(found, plots, heading)
    else:
        rows = class_figures(coco_set, scores)
    doc: dict = {"per_class": [r.to_dict() for r in by_ap(rows)]}
    if plots is not None:
        doc.update(analysis=found.to_dict(), plots=[str(p) for p in paths])
    if csv_file is not None:
        csv_file.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(csv_file, csv_text(by_ap(rows)))  # stopped mid-write: the old file or none
    if show:
        out.print(per_class_table(rows, f"{heading}: per class (percent; n/a: no ground truth of that class)"))
        if plots is not None:
            out.print(errors_table(found.errors))
            out.print(f"plots written to {shown(plots)}: " + ", ".join(shown(p.name) for p in paths), highlight=False)
        if csv_file is not None:
            out.print(f"per-class figures written to {shown(csv_file)}", highlight=False)
    return doc
