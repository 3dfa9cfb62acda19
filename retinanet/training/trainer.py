"""Training RetinaNet with MMDetection v2.0's recipe (facts sheet 1a, 2.6 and 5), resumable to the iteration.

One process per device; under torchrun the model is wrapped in DistributedDataParallel (gradients averaged), each
rank trains on its own per-device batches, and rank 0 alone logs and writes. Each iteration: the lr from the
schedule (a function of the global iteration), forward and loss (optionally under autocast), an all-reduce of the
loss values (for the log, the non-finite check and a pending stop request, so every rank takes the same decision),
backward, optional gradient clipping, SGD step.

Work directory: epoch_N.pth after each epoch and latest.pth pointing at the newest checkpoint (interrupted.pth
when Ctrl-C, SIGTERM or SIGHUP stopped a run mid-epoch), and log.jsonl with one JSON record per iteration and
evaluation.
A checkpoint holds only plain containers and tensors (loadable with weights_only=True): the reference's
state_dict and meta, plus optimizer, AMP scaler and train_state (epoch, iteration, batches done in the epoch,
RNG states) for --resume.
"""
from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from retinanet.config import MAX_SEED, PRECISION_NAMES, ModelConfig, check_config, check_lr_steps
from retinanet.distributed import DistInfo, barrier
from retinanet.errors import ArgumentError, CheckpointError, ImageError, RetinaNetError, first_line
from retinanet.inference.detector import resolve_device
from retinanet.inference.fast import amp_precision, check_precision
from retinanet.memory import process_peak_bytes
from retinanet.inference.fast import autocast as fast_autocast
from retinanet.model.losses import retina_loss
from retinanet.model.retinanet import RetinaNet
from retinanet.model.pretrained import initialise
from retinanet.training.schedule import (SGD_MOMENTUM, SGD_WEIGHT_DECAY, WARMUP_ITERS, WARMUP_RATIO, StepSchedule,
                                         scaled_lr, set_lr)
from retinanet.training.run_log import LOG, cut_back_log
from retinanet.training.work_dir import check_place
from retinanet.values import check_flag, check_fraction, check_number, check_path, check_whole, plain_fields
from retinanet.training.stop_request import StopRequest
from retinanet.data.coco import CocoSet
from retinanet.data.train_data import GroupedBatches, TrainSet, loader
from retinanet.training.train_state import (
    INTERRUPTED,
    LATEST,
    point_latest,
    read_resume_state,
    rng_state,
    set_rng_state,
    write_atomically,
)


class TrainingDiverged(RetinaNetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3


class TrainingStopped(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP (`signum`): a resumable checkpoint was written first."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.message, self.signum = message, signum


@dataclass(frozen=True)
class TrainOptions:
    epochs: int | None = None  # None: the config's (12 for 1x, 24 for 2x)
    batch_size: int = 2  # images per device (the reference: 2 on each of 8 GPUs)
    lr: float | None = None  # None: cfg.base_lr scaled linearly from cfg.base_batch to the global batch
    lr_steps: tuple[int, ...] | None = None  # None: the config's
    momentum: float = SGD_MOMENTUM
    weight_decay: float = SGD_WEIGHT_DECAY  # on every parameter, norm layers and biases included, as the reference
    warmup_iters: int = WARMUP_ITERS
    warmup_ratio: float = WARMUP_RATIO
    amp: bool = False  # autocast: fp16 with loss scaling on CUDA, bf16 on CPUs that support it natively
    precision: str | None = None  # fp32, bf16 or fp16 (with loss scaling); None: as `amp` says
    clip_grad: float | None = None  # max L2 norm of all gradients; the reference does not clip
    seed: int = 0
    workers: int = 2
    eval_every: int = 0  # also evaluate every N epochs; the last epoch always is, when there is a val set
    eval_batch_size: int = 1
    resume: bool = False
    keep_last: int | None = None  # keep only the newest N epoch checkpoints (None: all, as the reference)

    def __post_init__(self):
        """Each option checked by name (ArgumentError): epochs=0 silently trained the config's epochs, keep_last=0
        kept every checkpoint, workers=-1 or seed='1' failed deep in torch or numpy."""
        plain_fields(self)
        for name, low in (("epochs", 1), ("keep_last", 1)):
            if getattr(self, name) is not None:
                check_whole(getattr(self, name), name, low)
        for name, low in (("batch_size", 1), ("eval_batch_size", 1), ("workers", 0), ("eval_every", 0),
                          ("warmup_iters", 0), ("seed", 0)):
            check_whole(getattr(self, name), name, low)
        if self.seed > MAX_SEED:
            raise ArgumentError(f"seed must be from 0 to {MAX_SEED}, not {self.seed}")
        if self.lr_steps is not None:
            check_lr_steps(self.lr_steps)
        for name in ("momentum", "weight_decay"):
            check_number(getattr(self, name), name)
        if self.lr is not None:
            check_number(self.lr, "lr")
        if self.clip_grad is not None:
            check_number(self.clip_grad, "clip_grad", positive=True)
        check_fraction(self.warmup_ratio, "warmup_ratio")
        if not (self.precision is None or (isinstance(self.precision, str) and self.precision in PRECISION_NAMES)):
            raise ArgumentError(f"precision must be one of {', '.join(PRECISION_NAMES)} or None, not "
                                f"{self.precision!r}")  # whether it runs on the device: Trainer's check_precision
        check_flag(self.amp, "amp")
        check_flag(self.resume, "resume")


class TrainingEvents:
    """What a front end hears about while training (this base ignores it all); the CLI draws a progress bar and
    tables from it. Called on rank 0 only."""

    def start(self, total_iters: int, done_iters: int, info: dict) -> None: ...

    def iteration(self, record: dict) -> None: ...

    def epoch_done(self, epoch: int, checkpoint: Path) -> None: ...

    def evaluating(self, epoch: int, images: int): return None  # a progress(n) callable, or None

    def evaluated(self, epoch: int, metrics: dict) -> None: ...

    def message(self, text: str) -> None: ...


@dataclass
class TrainResult:
    checkpoint: Path | None
    epochs: int
    iterations: int
    metrics: dict | None  # the last evaluation's, when there was a validation set


def peak_memory_mb(device: torch.device) -> float | None:
    """mmcv's `memory` in MB (see retinanet.memory)."""
    peak = process_peak_bytes(device)
    return None if peak is None else round(peak / 2**20)


# --- the trainer ---------------------------------------------------------------------------------------------

class Trainer:
    """Build with the model config, a training CocoSet and a work directory, then `run()`.

    `init`: None (random backbone), an ImageNet backbone file or a detector checkpoint (fine-tuning). `meta` is
    stored in every checkpoint's meta (e.g. the zoo entry). `device` is this process's device (under torchrun
    its local GPU) and `dist` the process group's description (retinanet.distributed.init_distributed)."""

    def __init__(self, cfg: ModelConfig, train_set, work_dir: str | os.PathLike, options: TrainOptions = TrainOptions(),
                 *, init: str | os.PathLike | None = None, val_set=None, device: str | torch.device = "cpu",
                 dist_info: DistInfo = DistInfo(), meta: dict | None = None, reporter: TrainingEvents | None = None):
        check_config(cfg)
        if not isinstance(options, TrainOptions):
            raise ArgumentError(f"options must be a TrainOptions, not {type(options).__name__}")
        check_path(work_dir, "work_dir")
        for name, data in (("train_set", train_set), ("val_set", val_set)):
            if not isinstance(data, CocoSet) and not (name == "val_set" and data is None):
                raise ArgumentError(f"{name} must be a retinanet.CocoSet (CocoSet.load), not {type(data).__name__}")
        if init is not None:
            check_path(init, "init")
        if meta is not None and not _json_plain(meta):  # else the first epoch's checkpoint would not load
            raise ArgumentError("meta must be a dict of plain values (str, numbers, True/False/None, lists and dicts "
                                "of them): every checkpoint stores it, and checkpoints load with weights_only")
        self.cfg, self.options, self.val_set = cfg, options, val_set
        self.work_dir = Path(work_dir)
        self.device = resolve_device(device)
        self.dist = dist_info
        self.meta = dict(meta or {})
        self.reporter = reporter if (reporter is not None and dist_info.is_main) else TrainingEvents()
        self.precision = options.precision or amp_precision(self.device, options.amp)
        check_precision(self.device, self.precision)  # an unsupported --amp fails here, in one line
        check_place(self.work_dir)  # a file there failed only when the first epoch's checkpoint was saved

        self._build_data_and_schedule(train_set)
        self._build_model(init)
        self.epoch = self.iter_in_epoch = self.iter = 0
        self.metrics: dict | None = None
        if options.resume:
            latest = self.work_dir / LATEST
            if not os.path.lexists(latest) and (self.work_dir / LOG).exists():  # else read_resume_state says why
                raise CheckpointError(f"nothing to resume: the run in {self.work_dir} stopped before its first "
                                      "checkpoint (it has a log, no latest.pth); start it again with --overwrite")
            self._resume(read_resume_state(latest))
        self.model = self.net
        if dist_info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.net, device_ids=ids)
        self.stop = StopRequest()
        self._log = None

    def _build_data_and_schedule(self, train_set) -> None:
        """This rank's aspect-grouped batches, and the lr schedule for the global batch they make."""
        cfg, options, dist_info = self.cfg, self.options, self.dist
        self.data = TrainSet(train_set, cfg)
        if self.val_set is not None:  # a validation image that cannot be resized fails now, not after an epoch
            self.val_set.check_resizable(cfg.scale)
        if options.batch_size * dist_info.world_size > len(self.data):  # each step would be the set many times over
            processes = f" x {dist_info.world_size} processes" if dist_info.enabled else ""
            raise RetinaNetError(f"--batch-size {options.batch_size}{processes} is more images per step than the "
                                 f"{len(self.data)} training image(s); use a batch of at most {len(self.data)}")
        self.batches = GroupedBatches(self.data.aspect_groups(), options.batch_size, dist_info.rank,
                                      dist_info.world_size, options.seed)
        self.global_batch = options.batch_size * dist_info.world_size
        self.scaled_lr = scaled_lr(cfg.base_lr, cfg.base_batch, self.global_batch)
        self.epochs = cfg.epochs if options.epochs is None else options.epochs
        lr = options.lr if options.lr is not None else self.scaled_lr
        steps = cfg.lr_steps if options.lr_steps is None else options.lr_steps  # () is no steps, not the config's
        self.schedule = StepSchedule(lr, self.batches.steps_per_epoch, steps, warmup_iters=options.warmup_iters,
                                     warmup_ratio=options.warmup_ratio)

    def _build_model(self, init) -> None:
        """The network with its initial weights, the optimizer over its trainable parameters, the AMP scaler."""
        options = self.options
        torch.manual_seed(options.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
        self.net = RetinaNet(self.cfg)
        self.init_message = initialise(self.net, init) if not options.resume else ""
        self.net.to(self.device).train()
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=self.schedule.lr, momentum=options.momentum,
                                         weight_decay=options.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16" and self.device.type == "cuda")

    # -- state ---------------------------------------------------------------------------------------------

    def _resume(self, ckpt: dict) -> None:
        from retinanet.model.checkpoint import load_state

        state = ckpt["train_state"]
        if state.get("iter_in_epoch") and state.get("global_batch") != self.global_batch:
            raise CheckpointError(f"the run was interrupted mid-epoch with {state.get('global_batch')} images per "
                                  f"step; resume it with the same --batch-size x processes (now "
                                  f"{self.global_batch})")
        source = self.work_dir / LATEST
        load_state(self.net, ckpt["state_dict"], source=str(source))
        try:  # torch checks these as it goes, with every kind of exception: a damaged file is one line
            self.optimizer.load_state_dict(ckpt["optimizer"])
            if ckpt.get("scaler"):
                self.scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(state["rng"])
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError) as err:
            raise CheckpointError(f"{source}: its optimizer, loss-scaler or RNG state cannot be restored "
                                  f"({first_line(err)[:200]}); cannot resume from it") from None
        self.batches.seed = state["seed"]  # the interrupted epoch's order and flips depend on it
        self.epoch, self.iter_in_epoch, self.iter = state["epoch"], state["iter_in_epoch"], state["iter"]
        self.init_message = (f"everything from {(self.work_dir / LATEST).resolve()} (epoch {self.epoch + 1}, "
                             f"iteration {self.iter_in_epoch}: weights, optimizer, schedule, RNG)")

    def checkpoint(self, epochs_done: int, iter_in_epoch: int = 0) -> dict:
        """Everything to continue from here: `epoch` is the epoch to carry on with, `iter_in_epoch` its
        batches already trained on."""
        meta = {**self.meta, "CLASSES": list(self.cfg.names), "epoch": epochs_done, "iter": self.iter,
                "config": self.cfg.to_dict(), "time": time.asctime()}
        return {
            "meta": meta,
            "state_dict": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "train_state": {"epoch": epochs_done, "iter_in_epoch": iter_in_epoch, "iter": self.iter,
                            "global_batch": self.global_batch, "lr": self.schedule.lr, "seed": self.options.seed,
                            "rng": rng_state()},
        }

    def save(self, name: str, epochs_done: int, iter_in_epoch: int = 0) -> Path:
        path = self.work_dir / name
        if self.dist.is_main:
            write_atomically(self.checkpoint(epochs_done, iter_in_epoch), path)
            point_latest(self.work_dir, path)
        return path

    # -- logging -------------------------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        if not self.dist.is_main:
            return
        if self._log is None:
            self._log = open(self.work_dir / LOG, "a", encoding="utf-8")
        self._log.write(json.dumps(record) + "\n")
        self._log.flush()

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        if self.dist.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            if self.options.resume:  # what a killed run logged past its checkpoint is trained (and logged) again
                cut_back_log(self.work_dir / LOG, self.iter)
        barrier(self.dist)
        total = self.epochs * self.batches.steps_per_epoch
        info = {"lr": self.schedule.lr, "scaled_lr": self.scaled_lr, "global_batch": self.global_batch,
                "base_lr": self.cfg.base_lr, "base_batch": self.cfg.base_batch, "epochs": self.epochs,
                "iters_per_epoch": self.batches.steps_per_epoch, "images": len(self.data),
                "lr_steps": list(self.schedule.steps), "world_size": self.dist.world_size, "init": self.init_message,
                "resumed_at": ({"epoch": self.epoch, "iter_in_epoch": self.iter_in_epoch} if self.options.resume
                               else None)}
        self.log({"mode": "start", **info, "config": _plain(self.cfg.to_dict())})
        self.reporter.start(total, self.iter, info)
        last = None
        if self.epoch >= self.epochs:
            self.reporter.message(f"{self.work_dir / LATEST} has already trained {self.epoch} of {self.epochs} "
                                  "epochs: nothing to do (give a larger --epochs to train on)")
            return TrainResult(self.work_dir / LATEST, self.epoch, self.iter, None)
        try:
            while self.epoch < self.epochs:
                # a signal during the epoch stops it after the step; one during the epoch's save after the save,
                # which would otherwise be cut short and the whole epoch lost
                with self.stop.installed():
                    self._train_epoch()
                    self.epoch += 1
                    self.iter_in_epoch = 0
                    last = self.save(f"epoch_{self.epoch}.pth", self.epoch)
                    self._prune()
                self.reporter.epoch_done(self.epoch, last)
                self._stop_if_asked(last)
                every = self.options.eval_every
                if self.val_set is not None and (self.epoch == self.epochs or (every and self.epoch % every == 0)):
                    self.evaluate()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return TrainResult(last, self.epoch, self.iter, self.metrics)

    def _prune(self) -> None:
        """The interrupted checkpoint is superseded by a complete epoch; old epochs go beyond keep_last."""
        if not self.dist.is_main:
            return
        stale = [self.work_dir / INTERRUPTED]
        if self.options.keep_last:
            stale.append(self.work_dir / f"epoch_{self.epoch - self.options.keep_last}.pth")
        for path in stale:
            if path.exists():
                path.unlink()

    def _train_epoch(self) -> None:
        """One epoch, from batch `iter_in_epoch` on. Under run()'s stop handler: Ctrl-C / SIGTERM / SIGHUP end the
        step, save and stop."""
        self.batches.set_epoch(self.epoch, start=self.iter_in_epoch)
        self._train_steps(loader(self.data, self.batches, self.options.workers,
                                 pin_memory=self.device.type == "cuda"))

    def _train_steps(self, data) -> None:
        tick = time.perf_counter()
        for batch in data:
            data_time = time.perf_counter() - tick
            if batch.error:
                raise ImageError(batch.error)
            lr = self.schedule(self.iter, self.epoch)
            set_lr(self.optimizer, lr)
            loss_cls, loss_bbox = self._step(batch.to(self.device))
            self.iter += 1
            self.iter_in_epoch += 1
            now = time.perf_counter()
            record = {"mode": "train", "epoch": self.epoch + 1, "iter": self.iter_in_epoch,
                      "iters_per_epoch": self.batches.steps_per_epoch, "global_iter": self.iter, "lr": lr,
                      "loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss": loss_cls + loss_bbox,
                      "time": round(now - tick, 4), "data_time": round(data_time, 4),
                      "memory": peak_memory_mb(self.device)}
            self.log(record)
            self.reporter.iteration(record)
            tick = time.perf_counter()

    def _step(self, batch) -> tuple[float, float]:
        """Forward, the processes' agreement (stop? finite?), backward and the optimizer step: the losses."""
        with fast_autocast(self.device, self.precision):
            losses = retina_loss(self.model, batch.images, batch.boxes, batch.labels, batch.img_shapes)
        loss = losses["loss_cls"] + losses["loss_bbox"]
        loss_cls, loss_bbox, stop = self._agree(losses)
        if stop:
            self._stopped()
        if not (math.isfinite(loss_cls) and math.isfinite(loss_bbox)):
            self._diverged(loss_cls, loss_bbox)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.options.clip_grad:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.options.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss_cls, loss_bbox

    def _agree(self, losses: dict) -> tuple[float, float, bool]:
        """The loss values averaged over processes (as the reference logs them) and whether any process was asked
        to stop, in one all-reduce, so that every process takes the same decision at the same iteration."""
        values = torch.stack([losses["loss_cls"].detach().float(), losses["loss_bbox"].detach().float(),
                              torch.tensor(float(self.stop.requested), device=self.device)])
        if self.dist.enabled:
            dist.all_reduce(values)
            values[:2] /= self.dist.world_size
        loss_cls, loss_bbox, stop = values.tolist()
        return loss_cls, loss_bbox, stop > 0

    def _stop_if_asked(self, saved: Path) -> None:
        """Between epochs, after the save: stop if any process was asked to (agreed, as in _agree)."""
        asked = torch.tensor([float(self.stop.requested)], device=self.device)
        if self.dist.enabled:
            dist.all_reduce(asked)
        if asked.item() > 0:
            raise TrainingStopped(f"stopped after epoch {self.epoch} of {self.epochs}; saved {saved}"
                                  + (" (continue with --resume)" if self.epoch < self.epochs else ""), self.stop.signum)

    def _stopped(self):
        path = self.save(INTERRUPTED, self.epoch, self.iter_in_epoch)
        barrier(self.dist)
        where = f"epoch {self.epoch + 1}, iteration {self.iter_in_epoch}/{self.batches.steps_per_epoch}"
        raise TrainingStopped(f"stopped at {where}; saved {path} (continue with --resume)", self.stop.signum)

    def _diverged(self, loss_cls: float, loss_bbox: float):
        latest = self.work_dir / LATEST
        kept = f"the last good checkpoint is {latest.resolve()}" if latest.exists() else "no checkpoint was written yet"
        self.log({"mode": "diverged", "epoch": self.epoch + 1, "iter": self.iter_in_epoch + 1,
                  "global_iter": self.iter + 1, "loss_cls": _json_float(loss_cls), "loss_bbox": _json_float(loss_bbox)})
        raise TrainingDiverged(f"the loss became non-finite (loss_cls {loss_cls}, loss_bbox {loss_bbox}) at epoch "
                               f"{self.epoch + 1}, iteration {self.iter_in_epoch + 1}; training stopped and {kept} "
                               f"(try a lower --lr or --clip-grad)")

    # -- evaluation ----------------------------------------------------------------------------------------

    def evaluate(self) -> dict | None:
        """COCO box AP on the validation set with the current weights (every process detects its shard)."""
        from retinanet.inference.detector import Detector
        from retinanet.evaluation.coco_eval import coco_metrics, run_detection

        try:
            detector = Detector(self.cfg, model=self.net, device=self.device)
            progress = self.reporter.evaluating(self.epoch, -(-len(self.val_set) // self.dist.world_size))
            results = run_detection(detector, self.val_set, self.options.eval_batch_size, self.options.workers,
                                    progress=progress, dist=self.dist)
            metrics = coco_metrics(self.val_set, results) if self.dist.is_main else None
        finally:
            self.net.train()
        if metrics is not None:
            self.metrics = metrics
            self.log({"mode": "val", "epoch": self.epoch, "iter": self.iter, **metrics})
            self.reporter.evaluated(self.epoch, metrics)
        barrier(self.dist)
        return metrics


def _json_plain(meta) -> bool:
    try:
        return isinstance(meta, dict) and bool(json.dumps(meta))
    except (TypeError, ValueError):  # a NumPy number, a Path, an object, a loop
        return False


def _json_float(v: float):
    return v if math.isfinite(v) else str(v)


def _plain(d: dict) -> dict:
    """A config dict with tuples as lists, for JSON."""
    return json.loads(json.dumps(d, default=str))
