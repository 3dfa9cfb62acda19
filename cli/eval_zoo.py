"""`rdet eval --all|NAMES --data-root DIR [--check]`: reproduce the zoo's published box AP, row by row, with a
report that later runs resume from."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.table import Table

from retinanet.launch_env import torchrun_launch

from .common import Fail, err, load_zoo, out, print_json
from .outputs import held_output_dir, output_dir
from .text import shown

DEFAULT_REPORT = Path("zoo-report")


def _entries(names: list[str], all_models: bool, zoo_file):
    zoo = load_zoo(zoo_file)
    if all_models and names:
        raise Fail("give either --all or model names, not both")
    if not all_models and not names:
        raise Fail("give the model names to check, or --all for every row")
    if all_models:
        return list(zoo)
    entries, seen = [], set()
    for name in names:
        entry = zoo.get(name)
        if entry.name not in seen:
            seen.add(entry.name)
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class ZooCheck:
    """What to check and how to judge it."""

    names: list[str]
    all_models: bool
    check: bool
    tolerance: float
    report: Path | None
    limit: int | None
    as_json: bool


def run_zoo_check(job: ZooCheck, data: tuple, source, run, results_file) -> None:
    """`data`: (--data-root, --ann, --images); `source`: the WeightsSource (zoo, cache, offline); `run`:
    eval_cmd's _EvalRun."""
    from dataclasses import replace

    from retinanet.evaluation.coco_eval import score_set
    from zoo.checksum import sha256_file
    from zoo.reproduce import OFF, UNAVAILABLE, reproduce, reproduced, write_report

    from .eval_cmd import _detect, _notes, _provenance, eval_set, zoo_weights

    if source.weights is not None or source.random_weights or results_file is not None:
        raise Fail("checking zoo rows uses each row's own weights: --weights, --random-weights and --results are "
                   "for one model")
    if torchrun_launch().world_size > 1:
        raise Fail("checking zoo rows runs in one process: run it without torchrun")
    names, check, tolerance, as_json = job.names, job.check, job.tolerance, job.as_json
    entries = _entries(names, job.all_models, source.zoo_file)
    coco_set = eval_set(*data, job.limit)
    if not run.quiet:
        _notes(coco_set, job.limit)
    report_dir = job.report or DEFAULT_REPORT
    output_dir(report_dir, "--report")  # under a file or read-only: before any row runs
    with held_output_dir(report_dir, "--report"):  # a second check into it is refused while this one runs
        ann_sha256 = sha256_file(coco_set.ann_file)
        quiet_runs = run.quiet or as_json
        run = replace(run, quiet_download=True, quiet=quiet_runs)

        def evaluate(entry, weights_path):
            done = _detect(entry, coco_set, replace(source, weights=weights_path), run)
            scored = score_set(coco_set, done.results)
            return scored.stats, _provenance(entry, coco_set, done, scored)

        def said(row):
            if quiet_runs:
                return
            if row.status == UNAVAILABLE:
                err.print(f"{row.name}: weights unavailable, not scored ({shown(row.message)})", highlight=False)
            else:
                again = " (already in the report)" if row.resumed else ""
                err.print(f"{row.name}: box AP {row.measured:.2f}{again}", highlight=False)

        rows = reproduce(entries, evaluate, report_dir, ann_sha256, len(coco_set), tolerance,
                         weights_for=lambda e: zoo_weights(e, source, quiet_runs), on_row=said)
        from retinanet.evaluation.provenance import provenance

        context = provenance(model=None, entry=None, weights=None, weights_sha256=None, device=run.device,
                             precision=run.precision, test_scale=None, annotations=str(coco_set.ann_file),
                             annotations_sha256=ann_sha256, images=len(coco_set), scorer=_scorer())
        md, js = write_report(report_dir, rows, tolerance, str(coco_set.ann_file), ann_sha256, len(coco_set), context)
    off = [r for r in rows if r.status == OFF]
    scored_any = any(r.measured is not None for r in rows)
    if as_json:
        print_json({"images": len(coco_set), "annotations": str(coco_set.ann_file), "tolerance": tolerance,
                    "reproduced": reproduced(rows), "rows": [r.to_dict() for r in rows],
                    "report": {"markdown": str(md), "json": str(js)}, "provenance": context})
    else:
        _table(rows, coco_set, tolerance)
        out.print(f"report written to {shown(md)} and {shown(js)}", highlight=False)
    unavailable = [r.name for r in rows if r.status == UNAVAILABLE]
    if unavailable:
        err.print(f"not scored (weights unavailable): {', '.join(unavailable)}", highlight=False)
    if check and off:
        misses = "; ".join(f"{r.name} measured {r.measured:.2f}, published {r.published:.1f} "
                          f"({r.difference:+.2f})" for r in off)
        err.print(f"not reproduced within {tolerance:g} AP: {misses}", highlight=False)
        raise typer.Exit(1)
    if check and not scored_any:
        err.print("no row could be scored", highlight=False)
        raise typer.Exit(1)


def _scorer() -> str:
    from retinanet.evaluation.scorer import choose_backend

    return choose_backend()


def _table(rows, coco_set, tolerance) -> None:
    table = Table(title=f"Zoo check: box AP on {len(coco_set)} images of {coco_set.ann_file.name} "
                        f"(tolerance {tolerance:g})", title_justify="left")
    for col in ("model", "published", "measured", "diff", "status"):
        table.add_column(col, justify="left" if col in ("model", "status") else "right")
    for r in rows:
        table.add_row(r.name, "-" if r.published is None else f"{r.published:.1f}",
                      "-" if r.measured is None else f"{r.measured:.2f}",
                      "-" if r.difference is None else f"{r.difference:+.2f}",
                      r.status + (" (resumed)" if r.resumed else ""))
    out.print(table)
