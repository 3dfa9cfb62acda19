"""`rdet eval`: the COCO box AP of a zoo model, next to the published figure; one process or many (torchrun)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from .common import (Fail, WeightsSource, coco_files, err, errors_said_by_rank_0, is_rank_0, load_detector, out,
                     print_json)
from .metrics_table import metrics_table
from .options import shared_options


@shared_options
def evaluate(
    name: Optional[str] = typer.Argument(None, help="Zoo model name (optional with --results).", show_default=False),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per forward pass (the published "
                                   "figures use 1; images are only batched with others of the same padded size)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Data-loading processes (decode and resize)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images (by "
                                        "image id).", show_default=False),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Save the detections as a COCO results file.",
                                            show_default=False),
    results_file: Optional[Path] = typer.Option(None, "--results", help="Re-score a COCO results file (e.g. "
                                                "from --out) instead of running a model.", show_default=False),
    *, data_root, ann, images, weights, device, random_weights, precision, as_json, zoo_file, cache_dir, offline,
    quiet,
):
    """Measure a zoo model's COCO box AP and compare it with the published one.

    Examples:

      rdet eval x101_32x4d_fpn_2x --data-root /data/coco

      rdet eval r50_fpn_1x --ann val.json --images img/ --weights my.pth

      rdet eval --results dets.json --ann my/val.json    # re-score saved detections

      torchrun --nproc_per_node 8 -m cli.main eval r50_fpn_1x --data-root coco
    """
    from retinanet.evaluation.coco_eval import coco_metrics, load_results, match_file_names, save_results

    rescoring = results_file is not None
    with errors_said_by_rank_0():  # bad input stops here, before torch is even imported
        entry, coco_set = _inputs(name, data_root, ann, images, results_file, out_file, limit, zoo_file)
        if rescoring:
            results = match_file_names(load_results(results_file), coco_set)
    if is_rank_0() and not quiet:
        _notes(coco_set, limit)
    if is_rank_0() and random_weights and not rescoring:
        from .provenance import random_weights_notice

        random_weights_notice()
    if rescoring:
        if not is_rank_0():
            return  # re-scoring is rank 0's alone
    else:
        source = WeightsSource(zoo_file, cache_dir, offline, weights, random_weights)
        results = _detect(entry, coco_set, source, _EvalRun(device, batch_size, workers, precision,
                                                            quiet_download=quiet or as_json, quiet=quiet))
        if results is None:
            return  # rank 0 gathered everything: it alone scores, prints and writes
        if out_file is not None:
            save_results(out_file, results)
    _print(entry, coco_set, coco_metrics(coco_set, results), len(results), out_file, as_json)


@dataclass(frozen=True)
class _EvalRun:
    """How the model runs over the set: where, how many images at once, with how many loaders, how loud."""

    device: str
    batch_size: int
    workers: int
    precision: str
    quiet_download: bool
    quiet: bool


def _detect(entry, coco_set, source: WeightsSource, run: _EvalRun):
    """The model's COCO results on rank 0 (every shard gathered), None on the other ranks."""
    from retinanet.distributed import start_runtime
    from retinanet.evaluation.coco_eval import check_classes, run_detection

    with errors_said_by_rank_0():  # a bad --device is said by rank 0 alone
        here = start_runtime(run.device)
    try:
        with errors_said_by_rank_0():
            _, det = load_detector(entry.name, source, str(here.device), run.quiet_download or not here.is_main,
                                   run.precision)
            check_classes(det.cfg.num_classes, coco_set)
        show = here.is_main and not run.quiet
        if show and tuple(det.class_names) != coco_set.class_names:
            err.print(f"note: the model's class names differ from {coco_set.ann_file.name}'s; label i is scored "
                      "as its i-th category (by id)", highlight=False)
        with _ProgressBar(show, f"eval {entry.name}", len(coco_set)) as advance:
            results = run_detection(det, coco_set, run.batch_size, run.workers,
                                    progress=lambda n: advance(n * here.world_size), dist=here.dist)
        return results if here.is_main else None
    finally:
        here.close()


def _inputs(name, data_root, ann, images, results_file, out_file, limit, zoo_file):
    """(zoo entry or None, CocoSet), every argument checked."""
    import zoo
    from retinanet.data.coco import CocoSet

    rescoring = results_file is not None
    if name is None and not rescoring:
        raise Fail("give a model NAME to evaluate (see `rdet list`), or --results FILE to re-score detections")
    if rescoring and out_file is not None:
        raise Fail("--out saves a model's detections; with --results no model runs")
    entry = zoo.get(name, zoo_file) if name is not None else None
    files = coco_files(data_root, ann, images, "val", need_images=not rescoring)
    if files is None:
        raise Fail("give --data-root DIR (COCO layout) or --ann FILE --images DIR")
    ann_file, images_dir = files
    coco_set = CocoSet.load(ann_file, images_dir or ann_file.parent, limit=limit, check_files=not rescoring)
    return entry, coco_set


def _notes(coco_set, limit) -> None:
    if limit is not None:
        err.print(f"note: --limit {limit}: evaluating the first {len(coco_set)} of {coco_set.total_images} "
                  "images; the AP is not comparable with the published figure", highlight=False)
    if not coco_set.coco.anns:  # e.g. COCO test-dev: detections for the server, nothing to score here
        err.print(f"note: {coco_set.ann_file.name} holds no annotations: every figure will be n/a "
                  "(--out keeps the detections)", highlight=False)


def _print(entry, coco_set, metrics, n_detections, out_file, as_json) -> None:
    published = entry.box_ap if entry is not None else None
    if as_json:
        print_json({"model": entry.name if entry else None, "images": len(coco_set), "metrics": metrics,
                    "published_box_ap": None if published is None else round(published / 100, 6)})
    else:  # even with --quiet, which silences progress and notes only
        _report(entry, coco_set, metrics, published, n_detections, out_file)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text("" if task.speed is None else f"{task.speed:.1f} img/s", style="progress.data.speed")


class _ProgressBar:
    """A progress bar on stderr with images/s and ETA; `advance(n)` is a no-op when hidden."""

    def __init__(self, visible: bool, description: str, total: int):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=err, transient=False) if visible else None
        self.description, self.total = description, total

    def __enter__(self):
        if self.bar is None:
            return lambda n: None
        self.bar.start()
        task = self.bar.add_task(self.description, total=self.total)
        # under torchrun rank 0 counts its share times the world size (shards differ by one image at most)
        return lambda n: self.bar.update(task, completed=min(self.total, self.bar.tasks[0].completed + n))

    def __exit__(self, *exc):
        if self.bar is not None:
            if exc[0] is None:
                self.bar.update(self.bar.task_ids[0], completed=self.total)
            self.bar.stop()
        return False


def _report(entry, coco_set, metrics, published, n_detections, out_file):
    scope = f"{len(coco_set)} images"
    if len(coco_set) < coco_set.total_images:
        scope = f"the first {len(coco_set)} of {coco_set.total_images} images (--limit)"
    title = f"{entry.name if entry else 'detections'}: COCO box AP on {scope} of {coco_set.ann_file.name}"
    out.print(metrics_table(title, metrics, published_ap=published, compare=True))
    out.print(f"{n_detections} detections. Figures in percent (COCOeval's fractions x 100); n/a: the images hold "
              "no ground truth of that size.", highlight=False)
    if out_file is not None:
        out.print(f"detections written to {out_file}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
