"""`rdet train`: a zoo model's published recipe on COCO or on a COCO-format set of your own; one process or many."""
from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from retinanet.config import MAX_SEED
from retinanet.training.schedule import WARMUP_ITERS
from retinanet.version import package_version
from zoo.manifest import MAX_EPOCHS

from .common import Fail, WeightsSource, coco_files, coco_split, err, errors_said_by_rank_0, out, parse_size
from .metrics_table import metrics_table
from .options import MAX_BATCH, MAX_LR, MAX_WORKERS, shared_options
from .signals import exit_code, said
from .precision import AmpOption, PrecisionChoiceOption, chosen_precision
from .text import shown

INIT_HELP = ("imagenet: the ImageNet backbone the published model started from (downloaded and verified); "
             "zoo: this model's published COCO checkpoint (fine-tuning); none: random; or a FILE: a detector "
             "checkpoint to fine-tune (its classification layer is re-initialised when the classes differ) or an "
             "ImageNet backbone.")


@shared_options
def train(
    name: str = typer.Argument(..., help="Zoo model whose architecture and recipe to train (see `rdet list`)."),
    val_ann: Optional[Path] = typer.Option(None, "--val-ann", help="A COCO-format validation set (with "
                                           "--val-images).", show_default=False),
    val_images: Optional[Path] = typer.Option(None, "--val-images", help="The directory holding --val-ann's "
                                              "images.", show_default=False),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Checkpoints and log.jsonl go here "
                                            "(default: ./work_dirs/NAME).", show_default=False),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=MAX_EPOCHS, help="Epochs (default: the "
                                         "model's schedule, 12 for 1x, 24 for 2x).", show_default=False),
    batch_size: int = typer.Option(2, "--batch-size", min=1, max=MAX_BATCH, help="Images per device (the "
                                   "reference: 2 on each of 8 GPUs)."),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, max=MAX_LR, help="Learning rate (default: 0.01 "
                                       "scaled linearly from 16 images per step to batch-size x processes).",
                                       show_default=False),
    precision: Optional[str] = PrecisionChoiceOption,
    amp: bool = AmpOption,
    resume: bool = typer.Option(False, "--resume", help="Continue from WORK_DIR/latest.pth exactly where it "
                                "stopped (epoch, iteration, schedule, optimizer, AMP scaler, RNG)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start a new run in a --work-dir that holds an "
                                   "old one, deleting its checkpoints and log first (only files rdet train wrote: "
                                   "anything else named like them stops it)."),
    init: str = typer.Option("imagenet", "--init", help=INIT_HELP),
    eval_every: int = typer.Option(0, "--eval-every", min=0, help="Also evaluate every N epochs (the last epoch "
                                   "always is, when there is a validation set)."),
    workers: int = typer.Option(2, "--workers", min=0, max=MAX_WORKERS, help="Data-loading processes per device."),
    json_log: bool = typer.Option(False, "--json-log", help="Print the log records (one JSON object per "
                                  "iteration and evaluation) on stdout instead of the progress bar."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", min=0.0, help="Clip the gradients' total L2 "
                                              "norm to this (the reference does not clip).", show_default=False),
    seed: int = typer.Option(0, "--seed", min=0, max=MAX_SEED, help="Seed of the initial weights and of each "
                             "epoch's order and flips."),
    warmup_iters: int = typer.Option(WARMUP_ITERS, "--warmup-iters", min=0, help="Linear warm-up iterations "
                                     "(ratio 0.001)."),
    size: Optional[str] = typer.Option(None, "--size", hidden=True, help="Train at WxH instead of 1333x800 (quick "
                                       "checks; the checkpoint is still used at 1333x800 by predict/eval)."),
    *, data_root, ann, images, device, zoo_file, cache_dir, offline, quiet,
):
    """Train a zoo model with its published recipe, on COCO or your own COCO-format data.

    The recipe: the ImageNet backbone, stem and first stage frozen, BatchNorm
    statistics frozen; 1333x800 keep-ratio resize and random horizontal flip;
    focal and L1 losses; SGD (momentum 0.9, weight decay 1e-4), lr 0.01 per 16
    images with 500 warm-up iterations, x0.1 after epochs 8 and 11 (1x) or 16
    and 22 (2x).

    Each epoch writes WORK_DIR/epoch_N.pth (latest.pth points at it) in the
    reference format: `rdet predict/eval/bench --weights` load it. Ctrl-C,
    SIGTERM or SIGHUP save WORK_DIR/interrupted.pth; --resume continues
    exactly from there.

    Examples:

      rdet train r50_fpn_1x --data-root /data/coco

      rdet train r50_fpn_1x --ann my/train.json --images my/img --init zoo

      rdet train r50_fpn_1x --data-root /data/coco --resume

      torchrun --nproc_per_node 8 -m cli.main train r50_fpn_1x --data-root coco
    """
    import zoo
    from retinanet.launch_env import is_main_process
    from retinanet.training.work_dir import check_work_dir, claimed_work_dir

    files = _dataset_files(data_root, ann, images, val_ann, val_images)
    entry = zoo.get(name, zoo_file)
    scale = parse_size(size)
    work_dir = work_dir or Path("work_dirs") / entry.name
    check_work_dir(work_dir, resume, overwrite)  # every rank, before any of them waits for the others
    # rank 0 (the one that writes) holds the directory for the whole run: a second run is refused
    with claimed_work_dir(work_dir, resume, overwrite) if is_main_process() else nullcontext():
        _run(entry, files, work_dir, scale, device, precision, amp, overwrite, quiet, json_log, init,
             WeightsSource(zoo_file, cache_dir, offline),
             dict(epochs=epochs, batch_size=batch_size, lr=lr, resume=resume, eval_every=eval_every,
                  workers=workers, clip_grad=clip_grad or None, seed=seed, warmup_iters=warmup_iters))


def _run(entry, files, work_dir, scale, device, precision, amp, overwrite, quiet, json_log, init, source, options):
    from retinanet.distributed import start_runtime
    from retinanet.inference.fast import check_precision
    from retinanet.training.work_dir import clear_run

    runtime = start_runtime(device)
    try:
        precision = chosen_precision(precision, amp, runtime.device.type)
        check_precision(runtime.device, precision)  # the trainer's own check, before --init downloads anything
        if overwrite and runtime.dist.is_main:
            removed = clear_run(work_dir)
            if removed and not quiet:
                err.print(f"--overwrite: deleted {len(removed)} file(s) of the earlier run in {shown(work_dir)}")
        _train(entry, files, work_dir, runtime, scale, {**options, "precision": precision}, init, json_log, source,
               quiet)
    finally:
        runtime.close()


def _dataset_files(data_root, ann, images, val_ann, val_images):
    """((train annotations, images), (val annotations, images) or None) from the options."""
    train_files = coco_files(data_root, ann, images, "train")
    if train_files is None:
        raise Fail("give --data-root DIR (COCO layout) or --ann FILE with --images DIR")
    if (val_ann is None) != (val_images is None):
        raise Fail("--val-ann and --val-images go together")
    val_files = (val_ann, val_images) if val_ann is not None else None
    if val_files is None and data_root is not None:
        coco_val = coco_split(data_root, "val")
        if coco_val[0].is_file() and coco_val[1].is_dir():
            val_files = coco_val
    return train_files, val_files


def _init_file(init: str, entry, source: WeightsSource, quiet, dist):
    """The file training starts from (None for random): downloaded by rank 0 first, then found in the cache by
    the others."""
    from retinanet.distributed import barrier
    from zoo.cache import Cache
    from zoo.errors import ManifestError
    from zoo.weights import ensure_pretrained, ensure_weights

    if init == "none":
        return None
    if init in ("imagenet", "zoo"):
        ensure = ensure_pretrained if init == "imagenet" else ensure_weights
        path = None
        for turn in ("main", "others"):
            if dist.is_main == (turn == "main"):
                try:
                    path = ensure(entry, Cache(source.cache_dir), offline=source.offline or None,
                                  quiet=quiet or not dist.is_main)
                except ManifestError as e:
                    raise Fail(f"{e}; train with --init none or --init FILE") from None
            barrier(dist)
        return path
    path = Path(init)
    if not path.is_file():
        raise Fail(f"--init must be imagenet, zoo, none or a checkpoint file; '{init}' is none of these")
    return path


def _train(entry, files, work_dir, runtime, scale, options, init, json_log, source: WeightsSource, quiet):
    from retinanet.data.coco import CocoSet
    from retinanet.model.checkpoint import with_dataset_classes
    from retinanet.training.trainer import TrainingStopped, TrainOptions, Trainer

    (train_ann, train_images), val_files = files
    dist = runtime.dist
    show = dist.is_main and not quiet and not json_log
    with errors_said_by_rank_0():  # bad input fails here, before any training
        train_set = CocoSet.load(train_ann, train_images)
        val_set = CocoSet.load(*val_files) if val_files else None
        if val_set is not None and val_set.class_names != train_set.class_names:
            raise Fail(f"the validation set's categories ({', '.join(val_set.class_names[:5])}...) differ from the "
                       f"training set's ({', '.join(train_set.class_names[:5])}...)")
        cfg = with_dataset_classes(entry.model_config(**({"scale": scale} if scale else {})), train_set.class_names)
        init_file = None if options["resume"] else _init_file(init, entry, source, quiet or json_log, dist)
        progress = _TrainingProgress(entry.name, show, json_log and dist.is_main)
        trainer = Trainer(cfg, train_set, work_dir, TrainOptions(**options), init=init_file, val_set=val_set,
                          device=runtime.device, dist_info=dist, reporter=progress,
                          meta={"model": entry.name, "entry": entry.to_dict(), "rdet_version": package_version()})
    try:
        with progress, errors_said_by_rank_0():
            result = trainer.run()
    except TrainingStopped as e:
        if dist.is_main:
            err.print(f"{said(e)}: {shown(e.message)}", highlight=False)
        raise typer.Exit(exit_code(e))
    if not dist.is_main:
        return
    if json_log:
        _json_line({"mode": "done", "checkpoint": str(result.checkpoint), "epochs": result.epochs,
                    "iterations": result.iterations, "metrics": result.metrics})
    elif not quiet:
        if result.metrics is not None:
            _metrics_table(entry.name, val_set, result.metrics, result.epochs)
        out.print(f"trained {result.epochs} epoch{'s' if result.epochs != 1 else ''} ({result.iterations} "
                  f"iterations); weights: {result.checkpoint}",
                  highlight=False)


def _json_line(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class _TrainingProgress:
    """The trainer's events as a progress bar with loss and ETA on stderr, or as JSON lines on stdout."""

    def __init__(self, model: str, show: bool, json_lines: bool):
        self.model, self.show, self.json_lines = model, show, json_lines
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=err, transient=False) if show else None
        self.task = None
        self.epochs = 0

    def __enter__(self):
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False

    def start(self, total, done, info):
        self.epochs = info["epochs"]
        if self.json_lines:
            _json_line({"mode": "start", **info})
        if not self.show:
            return
        per_device = info["global_batch"] // info["world_size"]
        source = (f"{info['base_lr']:g} x {info['global_batch']}/{info['base_batch']} images per step "
                  f"({per_device} per device x {info['world_size']} process{'es' if info['world_size'] > 1 else ''})")
        lr_line = (f"lr {info['lr']:g} = {source}" if info["lr"] == info["scaled_lr"]
                   else f"lr {info['lr']:g} (--lr; the linear scaling rule gives {info['scaled_lr']:g} = {source})")
        err.print(f"training {self.model}: {info['images']} images, {info['iters_per_epoch']} iterations per epoch, "
                  f"{info['epochs']} epochs, lr x0.1 after epochs {info['lr_steps']}", highlight=False)
        err.print(lr_line, highlight=False)
        err.print(f"{'resuming with' if info.get('resumed_at') else 'initialisation:'} {shown(info['init'])}",
                  highlight=False)
        self.task = self.bar.add_task("train", total=total, completed=done, status="")

    def iteration(self, record):
        if self.json_lines:
            _json_line(record)
        if self.task is not None:
            self.bar.update(self.task, advance=1, description=f"epoch {record['epoch']}/{self.epochs}",
                            status=f"loss {record['loss']:.4f} lr {record['lr']:.2e}")

    def epoch_done(self, epoch, checkpoint):
        if self.bar is not None:
            self.bar.console.print(f"epoch {epoch}: saved {shown(checkpoint)}", highlight=False)

    def evaluating(self, epoch, images):
        if self.bar is None:
            return None
        task = self.bar.add_task(f"evaluating epoch {epoch}", total=images, status="")
        return lambda n: self.bar.update(task, advance=n)

    def evaluated(self, epoch, metrics):
        if self.json_lines:
            _json_line({"mode": "val", "epoch": epoch, **metrics})
        if self.bar is not None:
            self.bar.console.print(f"epoch {epoch}: bbox_mAP {metrics['bbox_mAP']:.3f}, bbox_mAP_50 "
                                   f"{metrics['bbox_mAP_50']:.3f}, bbox_mAP_75 {metrics['bbox_mAP_75']:.3f}",
                                   highlight=False)

    def message(self, text):
        if self.json_lines:
            _json_line({"mode": "message", "text": text})
        elif self.show:
            err.print(shown(text), highlight=False)


def _metrics_table(model, val_set, metrics, epoch):
    out.print(metrics_table(f"{model} after epoch {epoch}: COCO box AP on {len(val_set)} images of "
                            f"{shown(val_set.ann_file.name)}", metrics))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
