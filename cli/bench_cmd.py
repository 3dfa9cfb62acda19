"""`rdet bench`: each zoo model's speed and training memory on this machine, beside the published figures."""
from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from retinanet.config import TEST_SCALE
from retinanet.export.metadata import export_format

from .common import Fail, WeightsSource, err, coco_files, fmt, load_zoo, out, parse_size, print_json
from .outputs import output_file, writing
from .options import MAX_BATCH, MAX_BENCH_IMAGES, shared_options
from .precision import AmpOption, PrecisionChoiceOption, chosen_precision
from .text import shown

STAGE_IMAGES = 200  # --stages: medians and percentiles settle long before 2000 images
GPU_IMAGES, CPU_IMAGES = 2000, 20  # the published method times 2000 images; a CPU takes seconds per image
PUBLISHED_FPS = ("published fps: NVIDIA V100, fp32, batch 1, 5 warm-up iterations then 1995 val2017 images timed "
                 "from the copy to the GPU to the results (MMDetection tools/benchmark.py)")
PUBLISHED_MEM = ("published mem: torch.cuda.max_memory_allocated while training 2 images per GPU at 1333x800 "
                 "(MMDetection training logs)")


def _dataset_paths(files) -> Optional[list]:
    """Image paths of a checked COCO-format dataset, by image id (the reference times the first val2017 images)."""
    if files is None:
        return None
    from retinanet.data.coco import CocoSet

    dataset = CocoSet.load(*files)
    return [dataset.path(image) for image in dataset.image_ids]


def _class_config(entry, weights: Optional[Path], overrides: dict):
    """The entry's configuration with a fine-tuned checkpoint's own classes (they change the head's size)."""
    cfg = entry.model_config(**overrides)
    if weights is None:
        return cfg
    from retinanet.model.checkpoint import read_checkpoint, with_checkpoint_classes

    return with_checkpoint_classes(cfg, read_checkpoint(weights)["meta"])


def _release(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


@shared_options
def bench(
    names: Optional[List[str]] = typer.Argument(None, help="Zoo model names (default: every model).",
                                                show_default=False),
    all_models: bool = typer.Option(False, "--all", help="Every model of the zoo (the default without names)."),
    fps: bool = typer.Option(False, "--fps", help="Measure inference speed (with neither flag: both)."),
    mem: bool = typer.Option(False, "--mem", help="Measure training memory (with neither flag: both)."),
    num_images: Optional[int] = typer.Option(None, "--num-images", min=1, max=MAX_BENCH_IMAGES, help="Images per "
                                             f"model, warm-up included (default: {GPU_IMAGES} on a GPU as the "
                                             f"published figures, {CPU_IMAGES} on the CPU).", show_default=False),
    old_images: Optional[int] = typer.Option(None, "--images", min=1, max=MAX_BENCH_IMAGES, hidden=True,
                                             help="Deprecated spelling of --num-images.", show_default=False),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed iterations first (the published method: 5)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, max=MAX_BATCH, help="Images per forward pass "
                                   "(published: 1)."),
    precision: Optional[str] = PrecisionChoiceOption,
    amp: bool = AmpOption,
    stages: bool = typer.Option(False, "--stages", help="Also time each stage (decode, pre-process, copy, forward, "
                                "post-process: medians) and the end-to-end latency (p50/p90/p99) per model, over at most "
                                f"{STAGE_IMAGES} images."),
    images_dir: Optional[Path] = typer.Option(None, "--images-dir", help="The images of --ann.",
                                              show_default=False),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also draw published box AP against measured fps "
                                        "into this PNG file.", show_default=False),
    size: Optional[str] = typer.Option(None, "--size", hidden=True, help="Test scale WxH instead of 1333x800 "
                                       "(inference resize and training batch), for quick checks."),
    *, device, autotune, data_root, ann, weights, random_weights, as_json, zoo_file, cache_dir, offline, quiet,
):
    """Measure each model's speed (fps) and training memory here, beside the published figures.

    Speed is timed as the published column was: 5 warm-up iterations, batch 1,
    from the copy to the device to the results, synchronised on a GPU; on the
    bundled photo, or on a dataset's images.

    Memory is the peak of training iterations at the reference setting (2
    images at 1333x800) in a fresh process per model: CUDA max_memory_allocated
    on a GPU, the growth of the resident set on the CPU.

    A model that fails (out of memory, bad weights) is reported in its row and
    the others still run; the exit code is then 1.

    Examples:

      rdet bench --random-weights       # every model: speed and memory

      rdet bench r50_fpn_1x x101_64x4d_fpn_1x --fps --data-root /data/coco

      rdet bench --mem --json

      rdet bench --fps --plot speed.png

      rdet bench r50_fpn_1x --fps --precision fp16 --autotune --stages
    """
    if old_images is not None:  # `eval/train --images` is a directory: the count has its own name now
        err.print("note: bench --images N is deprecated, use --num-images N", highlight=False)
    images = num_images if num_images is not None else old_images
    exported = weights is not None and export_format(weights) is not None
    if exported and mem:
        raise Fail(f"--mem measures training memory, which needs a checkpoint: {weights} is an exported model "
                   "(bench its speed with --fps)")
    do_fps, do_mem = (fps or not mem), (mem or not (fps or exported))
    _check_options(plot, do_fps, weights, random_weights, images, warmup, batch_size, (weights, ann, zoo_file))
    scale = parse_size(size)
    dataset = coco_files(data_root, ann, images_dir, "val", images_flag="--images-dir") if do_fps else None
    zoo = load_zoo(zoo_file)
    entries = list(zoo) if all_models or not names else list(dict.fromkeys(zoo.get(n) for n in names))
    if weights is not None and len(entries) != 1:
        raise Fail("--weights belongs to one model: name exactly one")

    from retinanet.benchmark.measure import device_name  # imports torch
    from retinanet.inference.detector import resolve_device

    dev = resolve_device(device)
    if images is None:
        images = GPU_IMAGES if dev.type == "cuda" else CPU_IMAGES
        if do_fps and images <= warmup * batch_size:
            raise Fail(f"the default --num-images {images} leaves nothing to time after --warmup {warmup} of "
                       f"--batch-size {batch_size}; give --num-images")
    precision = chosen_precision(precision, amp, dev.type)
    if not exported:  # an export runs as it was exported; a checkpoint's precision must run here (one line)
        from retinanet.inference.fast import check_precision

        check_precision(dev, precision)
    plan = _Plan(dev, precision, do_fps, do_mem, scale, _dataset_paths(dataset),
                 images, warmup, batch_size, WeightsSource(zoo_file, cache_dir, offline, weights, random_weights),
                 stages and do_fps, autotune)
    rows = [_Row(e.name, e.fps, e.mem_gb) for e in entries]
    # Downloads first, with their own progress output, so they never interleave with the bench's bar.
    files = _weights_files(entries, rows, plan, quiet or as_json)
    _measure_all(entries, rows, files, plan, quiet)
    dev_name = device_name(dev)
    if plot is not None:
        from .plot import speed_accuracy_chart

        points = [(r.model, r.fps, e.box_ap) for e, r in zip(entries, rows)
                  if r.fps is not None and e.box_ap is not None]
        with writing(plot):  # a full disk, or the directory gone since the check: one line
            speed_accuracy_chart(points, plot, title=f"RetinaNet: published box AP vs speed on {dev_name}")
    if as_json:
        from .provenance import bench_provenance

        print_json({"device": dev_name, "results": [r.to_json() for r in rows],
                    "provenance": {**bench_provenance(dev, dev_name, plan.precision, plan.size, weights,
                                                      random_weights), "autotune": plan.autotune}})
    else:
        _table(rows, dev_name, plan)
    if plot is not None:
        (err if as_json else out).print(f"speed/accuracy chart written to {shown(plot)}", highlight=False)
    if any(r.error is not None for r in rows):
        raise typer.Exit(1)


def _check_options(plot, do_fps, weights, random_weights, images, warmup, batch_size, read) -> None:
    if plot is not None and not do_fps:
        raise Fail("--plot draws the measured fps: add --fps (or drop --mem)")
    if plot is not None and plot.suffix.lower() != ".png":
        raise Fail(f"--plot writes a PNG: give a file name ending in .png, not '{plot}'")
    if plot is not None:
        output_file(plot, "--plot", read)  # before the models run; never over a file it reads
    if weights is not None and random_weights:
        raise Fail("--weights and --random-weights exclude each other")
    if do_fps and images is not None and images <= warmup * batch_size:
        raise Fail(f"--num-images {images} leaves nothing to time after --warmup {warmup} of --batch-size "
                   f"{batch_size}")


@dataclass(frozen=True)
class _Plan:
    """What to measure, where and how: the same for every model of one `rdet bench`."""

    device: Any  # torch.device
    precision: str
    fps: bool
    mem: bool
    scale: Optional[tuple[int, int]]  # the hidden --size, else the reference's
    paths: Optional[list]  # dataset images to time, None for the bundled photo
    images: int
    warmup: int
    batch_size: int
    source: WeightsSource
    stages: bool = False
    autotune: bool = False  # cuDNN's autotuner (Detector's autotune)

    @property
    def overrides(self) -> dict:
        return {"scale": self.scale} if self.scale else {}

    @property
    def size(self) -> tuple[int, int]:
        return self.scale or TEST_SCALE


@dataclass
class _Row:
    """One model's line of the table (and of --json's results)."""

    model: str
    published_fps: Optional[float]
    published_mem_gb: Optional[float]
    fps: Optional[float] = None
    ms_per_image: Optional[float] = None
    detections: Optional[float] = None  # per timed image: the post-processing load in the fps figure
    runtime: Optional[str] = None  # what ran the timed model: PyTorch, onnxruntime, torch.export
    mem_gb: Optional[float] = None
    stages: Optional[dict] = None  # --stages: retinanet.benchmark.stages.time_stages's report
    error: Optional[str] = None

    def to_json(self) -> dict:
        doc = {"model": self.model, "fps": self.fps, "ms_per_image": self.ms_per_image, "runtime": self.runtime,
               "detections_per_image": self.detections, "mem_gb": self.mem_gb,
               "published_fps": self.published_fps, "published_mem_gb": self.published_mem_gb}
        if self.stages is not None:
            doc["stages"] = self.stages
        return doc if self.error is None else {**doc, "error": self.error}


def _weights_files(entries, rows, plan: _Plan, quiet: bool) -> dict:
    """{model: checkpoint} for the models to time; a failed download becomes its row's error."""
    from retinanet.benchmark.measure import one_line

    files = {}
    for e, row in zip(entries, rows):
        if plan.fps and plan.source.weights is None and not plan.source.random_weights:
            from zoo.cache import Cache
            from zoo.weights import ensure_weights

            try:
                files[e.name] = ensure_weights(e, Cache(plan.source.cache_dir), offline=plan.source.offline or None,
                                               quiet=quiet)
            except Exception as exc:  # noqa: BLE001 - one model's failure is its row's, the others go on
                row.error = one_line(exc)
        elif plan.source.weights is not None:
            files[e.name] = plan.source.weights
    return files


def _measure_all(entries, rows, files, plan: _Plan, quiet: bool) -> None:
    """Each model's speed and memory into its row, under one progress bar; a failure is its row's error."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from retinanet.benchmark.measure import one_line, training_memory

    per_model = (plan.images if plan.fps else 0) + (1 if plan.mem else 0)
    if not quiet:
        _say_what_it_takes(len(entries), plan)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, disable=quiet, transient=False)
    with progress:
        task = progress.add_task("bench", total=per_model * len(entries))
        for e, row in zip(entries, rows):
            start = progress.tasks[0].completed
            problems = [row.error] if row.error is not None else []
            if plan.fps and not problems:
                progress.update(task, description=f"{e.name}: speed")
                try:
                    _measure_speed(row, e, files.get(e.name), plan, lambda n: progress.advance(task, n))
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"speed: {one_line(exc)}")
                _release(plan.device)
            if plan.mem:
                progress.update(task, description=f"{e.name}: memory")
                try:
                    weights = files.get(e.name) if not plan.source.random_weights else None
                    cfg = _class_config(e, weights, plan.overrides)
                    row.mem_gb = round(training_memory(cfg, plan.device, images=2, size=plan.size).gb, 2)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"memory: {one_line(exc)}")
                _release(plan.device)
            if problems:
                row.error = "; ".join(dict.fromkeys(problems))
            progress.update(task, completed=start + per_model)
            if not quiet and not err.is_terminal:  # piped or logged: the bar shows nothing, so a line per model
                err.print(f"{e.name}: fps {fmt(row.fps)}, memory {fmt(row.mem_gb)} GB"
                          + (f" ({shown(row.error)})" if row.error is not None else ""), highlight=False)
        progress.update(task, description="done")


def _say_what_it_takes(models: int, plan: _Plan) -> None:
    """Up front, since a CPU bench of the whole zoo runs for minutes."""
    parts = ([f"{plan.images} images each for speed"] if plan.fps else []) + (
        ["a training step for memory"] if plan.mem else [])
    line = f"bench: {models} model(s), {' and '.join(parts)}"
    if plan.device.type == "cpu":
        line += ("; on a CPU expect about a minute per model (all ten: 506 s on a laptop-class CPU, "
                 "measured with --fps --random-weights)")
    err.print(line, highlight=False)


def _measure_speed(row: _Row, entry, weights_file, plan: _Plan, advance) -> None:
    """fps, ms per image, detections per image (rounded as the table shows them), the runtime and --stages,
    into `row`."""
    import zoo
    from retinanet.benchmark.inputs import encoded_images, loader_for
    from retinanet.benchmark.measure import time_inference

    det = zoo.load(entry.name, weights=weights_file, device=str(plan.device), zoo_file=plan.source.zoo_file,
                   random_weights=plan.source.random_weights, precision=plan.precision, quiet=True,
                   autotune=plan.autotune, **plan.overrides)
    try:
        speed = time_inference(det, loader_for(det, plan.paths), images=plan.images, warmup=plan.warmup, batch_size=plan.batch_size,
                               progress=advance)
        row.fps, row.ms_per_image, row.detections = (round(speed.fps, 3), round(speed.ms_per_image, 2),
                                                     round(speed.detections, 1))
        row.runtime = det.runtime
        if plan.stages:
            from retinanet.benchmark.stages import time_stages

            row.stages = time_stages(det, encoded_images(plan.paths), images=min(STAGE_IMAGES, plan.images),
                                     warmup=plan.warmup)
    finally:
        del det


def _ratio(measured, published) -> str:
    return "-" if measured is None or not published else f"{measured / published:.2f}x"


def _table(rows: list[_Row], dev_name: str, plan: _Plan) -> None:
    on_gpu, precision = plan.device.type == "cuda", plan.precision
    table = Table(title=f"rdet bench on {dev_name}" + ("" if precision == "fp32" else f" ({precision} autocast)"),
                  title_justify="left")
    table.add_column("model", no_wrap=True)
    if plan.fps:
        for col in ("fps", "published fps", "ratio", "ms/image", "dets/image"):
            table.add_column(col, justify="right")
        table.add_column("runtime")
    if plan.mem:
        table.add_column("mem GB" if on_gpu else "mem GB (RSS)", justify="right")
        table.add_column("published mem GB", justify="right")
    table.add_column("status")
    for r in rows:
        cells = [r.model]
        if plan.fps:
            cells += [fmt(r.fps, ".2f"), fmt(r.published_fps), _ratio(r.fps, r.published_fps),
                      fmt(r.ms_per_image, ".1f"), fmt(r.detections, ".1f"), r.runtime or "-"]
        if plan.mem:
            cells += [fmt(r.mem_gb, ".2f"), fmt(r.published_mem_gb)]
        cells.append(f"[red]{shown(r.error)}[/red]" if r.error is not None else "[green]ok[/green]")
        table.add_row(*cells)
    out.print(table)
    if plan.stages:
        _stages_table(rows)
    for note in _notes(plan):
        out.print(f"[dim]{note}.[/dim]", highlight=False)


def _stages_table(rows: list[_Row]) -> None:
    from retinanet.benchmark.stages import STAGES

    table = Table(title="per image: stage medians and end-to-end latency (ms)", title_justify="left")
    table.add_column("model", no_wrap=True)
    for col in (*STAGES, "p50", "p90", "p99"):
        table.add_column(col, justify="right")
    for r in rows:
        if r.stages is not None:
            lat = r.stages["latency_ms"]
            table.add_row(r.model, *(fmt(r.stages["stages_ms"][s], ".2f") for s in STAGES),
                          *(fmt(lat[q], ".2f") for q in ("p50", "p90", "p99")))
    out.print(table)


def _notes(plan: _Plan) -> list[str]:
    notes = []
    if plan.fps:
        source = "the bundled photo" if plan.paths is None else f"{len(plan.paths)} dataset images"
        notes += [f"measured fps: {plan.images} images ({plan.warmup} warm-up iterations) of {source} at "
                  f"{'x'.join(map(str, plan.size))}, batch {plan.batch_size}, {plan.precision}"
                  + ("; uint8 images handed over in pinned memory, uploaded and normalised in the timed region"
                     if plan.device.type == "cuda" else "")
                  + ("; random weights with a trained model's output load" if plan.source.random_weights else "")
                  + ("; cuDNN autotuned (--autotune)" if plan.autotune else ""),
                  PUBLISHED_FPS]
        if plan.precision != "fp32":
            notes.append(f"{plan.precision} autocast changes the detections slightly: measure its box AP against "
                         f"fp32 with `rdet eval NAME --precision {plan.precision}` before relying on these speeds")
    if plan.mem:
        notes.append("measured mem: torch.cuda.max_memory_allocated while training 2 images in a fresh process"
                     if plan.device.type == "cuda" else "measured mem: peak resident-memory growth of a fresh CPU "
                     "process training 2 images: a host figure, not comparable with the GPU allocator's")
        notes.append(PUBLISHED_MEM)
    return notes


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
