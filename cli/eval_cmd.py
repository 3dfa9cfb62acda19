"""`rdet eval`: the COCO box AP of a zoo model, next to the published figure; one process or many (torchrun)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from retinanet.launch_env import is_main_process

from .common import (Fail, WeightsSource, coco_files, err, errors_said_by_rank_0, load_detector, out,
                     print_json)
from .metrics_table import metrics_table
from .options import MAX_BATCH, MAX_WORKERS, shared_options
from .outputs import output_file, writing
from .text import shown


@shared_options
def evaluate(
    names: Optional[list[str]] = typer.Argument(None, help="Zoo model name (optional with --results); several, or "
                                                "--all, to check rows against their published AP.",
                                                show_default=False),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=MAX_BATCH, help="Images per forward pass (the "
                                   "published figures use 1; images are only batched with others of the same "
                                   "padded size)."),
    workers: int = typer.Option(2, "--workers", min=0, max=MAX_WORKERS, help="Data-loading processes (decode and "
                                "resize)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate only the first N images (by "
                                        "image id).", show_default=False),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Save the detections as a COCO results file.",
                                            show_default=False),
    results_file: Optional[Path] = typer.Option(None, "--results", help="Re-score a COCO results file (e.g. "
                                                "from --out) instead of running a model.", show_default=False),
    per_class: bool = typer.Option(False, "--per-class", help="Also AP, AP50, AP75, AR100 and #GT per class, best "
                                   "first."),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="Write the per-class figures to a CSV file.",
                                            show_default=False),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write PR curves, confusion matrix, score histogram "
                                         "and error breakdown PNGs to DIR (and the error table).",
                                         show_default=False),
    all_models: bool = typer.Option(False, "--all", help="Evaluate every zoo row (with --check: against its "
                                    "published AP)."),
    check: bool = typer.Option(False, "--check", help="Exit non-zero, naming the rows, when a row's AP differs "
                               "from the published one by more than --tolerance."),
    tolerance: float = typer.Option(0.1, "--tolerance", min=0.0, help="AP points a row may differ by under "
                                    "--check."),
    report: Optional[Path] = typer.Option(None, "--report", help="Directory for the zoo check's report.md, "
                                          "report.json and per-row results (rows already there are not run "
                                          "again) [default: ./zoo-report].", show_default=False),
    *, data_root, ann, images, weights, device, random_weights, precision, as_json, zoo_file, cache_dir, offline,
    quiet,
):
    """Measure a zoo model's COCO box AP and compare it with the published one.

    Examples:

      rdet eval x101_32x4d_fpn_2x --data-root /data/coco

      rdet eval r50_fpn_1x --ann val.json --images img/ --weights my.pth

      rdet eval --results dets.json --ann my/val.json    # re-score saved detections

      rdet eval r50_fpn_1x --data-root /data/coco --per-class --plots plots/

      rdet eval r50_fpn_1x --weights 'runs/epoch_*.pth' --data-root coco

      rdet eval --all --data-root /data/coco --check --report zoo-report/

      torchrun --nproc_per_node 8 -m cli.main eval r50_fpn_1x --data-root /data/coco
    """
    from retinanet.evaluation.coco_eval import load_results, match_file_names, save_results

    from .eval_explain import check_outputs

    names = list(names or [])
    rescoring = results_file is not None
    source = WeightsSource(zoo_file, cache_dir, offline, weights, random_weights)
    run = _EvalRun(device, batch_size, workers, precision, quiet_download=quiet or as_json, quiet=quiet)
    with errors_said_by_rank_0():  # bad input stops here, before torch is even imported
        check_outputs(csv_file, plots)
        if not rescoring and precision != "fp32":  # once for every row or checkpoint, before any download
            from retinanet.inference.detector import resolve_device
            from retinanet.inference.fast import check_precision

            check_precision(resolve_device(device), precision)
        if all_models or check or len(names) > 1:
            from .eval_zoo import ZooCheck, run_zoo_check

            return run_zoo_check(ZooCheck(names, all_models, check, tolerance, report, limit, as_json),
                                 (data_root, ann, images), source, run, results_file)
        checkpoints = _expand_weights(weights)
        entry, coco_set = _inputs(names[0] if names else None, data_root, ann, images, results_file, out_file,
                                  limit, zoo_file)
        read = (coco_set.ann_file, results_file, *checkpoints, zoo_file)  # what --out and --csv must not overwrite
        check_outputs(csv_file, plots, read)
        if out_file is not None:
            output_file(out_file, inputs=read)  # before the inference: an unwritable --out must not cost the run
        if rescoring:
            results = match_file_names(load_results(results_file), coco_set)
    if is_main_process() and not quiet:
        _notes(coco_set, limit)
    if is_main_process() and random_weights and not rescoring:
        from .provenance import random_weights_notice

        random_weights_notice()
    if len(checkpoints) > 1:
        from .eval_many import run_checkpoints

        return run_checkpoints(entry, coco_set, checkpoints, source, run, out_file, plots, as_json)
    done = None
    if rescoring:
        if not is_main_process():
            return  # re-scoring is rank 0's alone
    else:
        done = _detect(entry, coco_set, WeightsSource(zoo_file, cache_dir, offline, checkpoints[0] if checkpoints
                                                      else None, random_weights), run)
        if done is None:
            return  # rank 0 gathered everything: it alone scores, prints and writes
        results = done.results
        if out_file is not None:
            with writing(out_file):
                save_results(out_file, results)
    scored = _score(coco_set, results)
    if not as_json:  # even with --quiet, which silences progress and notes only
        _report(entry, coco_set, scored.stats, len(results), out_file)
    doc = _explain(coco_set, results, scored, per_class, csv_file, plots,
                   entry.name if entry is not None else "detections", as_json)
    if as_json:
        print_json({**_summary(entry, coco_set, scored.stats), **doc,
                    "provenance": _provenance(entry, coco_set, done, scored)})


def _score(coco_set, results):
    from retinanet.evaluation.coco_eval import score_set

    return score_set(coco_set, results)


def _explain(coco_set, results, scored, per_class, csv_file, plots, heading, as_json) -> dict:
    from .eval_explain import explain

    return explain(coco_set, results, scored, per_class=per_class, csv_file=csv_file, plots=plots,
                   heading=heading, show=not as_json)


def _expand_weights(pattern: Optional[Path]) -> list[Path]:
    """--weights as given, or the files a glob in it matches (sorted by the number in their names, then name)."""
    import glob
    import os
    import re

    if pattern is None:
        return []
    if not glob.has_magic(str(pattern)):
        return [pattern]
    found = [Path(p) for p in glob.glob(os.path.expanduser(str(pattern))) if Path(p).is_file()]
    if not found:
        raise Fail(f"--weights '{pattern}' matches no file")

    def order(p: Path):
        digits = re.findall(r"\d+", p.stem)
        return (int(digits[-1]) if digits else -1, p.name)

    return sorted(found, key=order)


def _provenance(entry, coco_set, done, scored) -> dict:
    from retinanet.evaluation.provenance import provenance
    from zoo.checksum import sha256_file

    det = done.detector if done is not None else None
    weights = done.weights if done is not None else None
    return provenance(model=entry.name if entry else None, entry=entry.to_dict() if entry else None,
                      weights=str(weights) if weights else None,
                      weights_sha256=sha256_file(weights) if weights else None,
                      device=str(det.device) if det else None, precision=det.precision if det else None,
                      test_scale=det.cfg.scale if det else None, annotations=str(coco_set.ann_file),
                      annotations_sha256=sha256_file(coco_set.ann_file), images=len(coco_set),
                      scorer=scored.backend)


@dataclass(frozen=True)
class _EvalRun:
    """How the model runs over the set: where, how many images at once, with how many loaders, how loud."""

    device: str
    batch_size: int
    workers: int
    precision: str
    quiet_download: bool
    quiet: bool


@dataclass
class DetectionRun:
    results: list[dict]
    detector: object  # retinanet.Detector
    weights: Optional[Path]  # the checkpoint file used (None: random weights)


def _detect(entry, coco_set, source: WeightsSource, run: _EvalRun, decoded=None) -> Optional[DetectionRun]:
    """The model's COCO results on rank 0 (every shard gathered), None on the other ranks. `decoded`: a
    DecodedImages kept between runs (many checkpoints of one model)."""
    from dataclasses import replace

    from retinanet.distributed import start_runtime
    from retinanet.evaluation.coco_eval import check_classes, run_detection, start_worker_server

    if run.workers:
        start_worker_server()  # its imports overlap the model's loading
    with errors_said_by_rank_0():  # a bad --device is said by rank 0 alone
        here = start_runtime(run.device)
    try:
        with errors_said_by_rank_0():
            quiet = run.quiet_download or not here.is_main
            if source.weights is None and not source.random_weights:  # its path goes into the provenance
                source = replace(source, weights=zoo_weights(entry, source, quiet))
            _, det = load_detector(entry.name, source, str(here.device), quiet, run.precision)
            check_classes(det.cfg.num_classes, coco_set)
        show = here.is_main and not run.quiet
        if show and tuple(det.class_names) != coco_set.class_names:
            err.print(f"note: the model's class names differ from {shown(coco_set.ann_file.name)}'s; label i is scored "
                      "as its i-th category (by id)", highlight=False)
        label = entry.name if source.weights is None else f"{entry.name} ({Path(source.weights).name})"
        with _ProgressBar(show, f"eval {label}", len(coco_set)) as advance:
            results = run_detection(det, coco_set, run.batch_size, run.workers,
                                    progress=lambda n: advance(n * here.world_size), dist=here.dist,
                                    decoded=decoded)
        return DetectionRun(results, det, source.weights) if here.is_main else None
    finally:
        here.close()


def zoo_weights(entry, source: WeightsSource, quiet: bool) -> Path:
    """The entry's verified checkpoint in the cache, downloaded when missing."""
    from zoo.cache import Cache
    from zoo.weights import ensure_weights

    return ensure_weights(entry, Cache(source.cache_dir), offline=source.offline or None, quiet=quiet)


def _inputs(name, data_root, ann, images, results_file, out_file, limit, zoo_file):
    """(zoo entry or None, CocoSet), every argument checked."""
    import zoo

    rescoring = results_file is not None
    if name is None and not rescoring:
        raise Fail("give a model NAME to evaluate (see `rdet list`), or --results FILE to re-score detections")
    if rescoring and out_file is not None:
        raise Fail("--out saves a model's detections; with --results no model runs")
    entry = zoo.get(name, zoo_file) if name is not None else None
    return entry, eval_set(data_root, ann, images, limit, rescoring)


def eval_set(data_root, ann, images, limit, rescoring: bool = False):
    """The CocoSet that --data-root or --ann/--images name (image files checked unless only re-scoring)."""
    from retinanet.data.coco import CocoSet

    files = coco_files(data_root, ann, images, "val", need_images=not rescoring)
    if files is None:
        raise Fail("give --data-root DIR (COCO layout) or --ann FILE --images DIR")
    ann_file, images_dir = files
    return CocoSet.load(ann_file, images_dir or ann_file.parent, limit=limit, check_files=not rescoring)


def _notes(coco_set, limit) -> None:
    if limit is not None:
        err.print(f"note: --limit {limit}: evaluating the first {len(coco_set)} of {coco_set.total_images} "
                  "images; the AP is not comparable with the published figure", highlight=False)
    if not coco_set.coco.anns:  # e.g. COCO test-dev: detections for the server, nothing to score here
        err.print(f"note: {shown(coco_set.ann_file.name)} holds no annotations: every figure will be n/a "
                  "(--out keeps the detections)", highlight=False)


def _summary(entry, coco_set, metrics) -> dict:
    """The JSON document's first keys: what was scored, the 12 figures and the published AP (fractions)."""
    published = entry.box_ap if entry is not None else None
    return {"model": entry.name if entry else None, "images": len(coco_set), "metrics": metrics,
            "published_box_ap": None if published is None else round(published / 100, 6)}


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


def _report(entry, coco_set, metrics, n_detections, out_file):
    published = entry.box_ap if entry is not None else None
    scope = f"{len(coco_set)} images"
    if len(coco_set) < coco_set.total_images:
        scope = f"the first {len(coco_set)} of {coco_set.total_images} images (--limit)"
    title = f"{entry.name if entry else 'detections'}: COCO box AP on {scope} of {shown(coco_set.ann_file.name)}"
    out.print(metrics_table(title, metrics, published_ap=published, compare=True))
    out.print(f"{n_detections} detections. Figures in percent (COCOeval's fractions x 100); n/a: the images hold "
              "no ground truth of that size.", highlight=False)
    if out_file is not None:
        out.print(f"detections written to {shown(out_file)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
