"""Speed and memory measurements behind the zoo's "Inf time (fps)" and "Mem (GB)" columns (facts sheet §6).

Speed follows MMDetection's tools/benchmark.py: batch 1, the first `warmup` iterations untimed, each iteration
timed with perf_counter between two CUDA synchronisations, covering what `model(return_loss=False, rescale=True)`
covered there: the copy of the already pre-processed image to the device, the forward pass and post-processing
down to host arrays. Decoding, resizing and normalising (the reference's data loader) are outside the timer.
fps = timed images / accumulated time. (The reference adds its last iteration's time twice; we do not.)
The detector is timed as given: rdet's inference path folds BatchNorm into the convolutions (the reference's
optional --fuse-conv-bn, off for the published figures) and runs channels-last; cuDNN autotuning is off as there,
unless the detector asks for it (`rdet bench --autotune`).

Memory is what mmcv's logger reports: the peak of `torch.cuda.max_memory_allocated` over training iterations
(forward + loss + backward + SGD step, 2 images per device at 1333x800), measured in a fresh child process so
nothing else in this one counts. On the CPU there is no allocator counter, so the figure is the child's peak
resident memory growth over the same iterations (Linux: VmHWM after resetting it; elsewhere a sampling thread).
"""
from __future__ import annotations

import platform
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Callable

import torch

from retinanet.config import TEST_SCALE, ModelConfig, check_config, check_size
from retinanet.errors import ArgumentError, RetinaNetError, exhausted_memory, first_line
from retinanet.inference.torch_switches import inference_switches
from retinanet.memory import max_rss_bytes
from retinanet.training.schedule import SGD_MOMENTUM, SGD_WEIGHT_DECAY
from retinanet.values import check_batch_size, check_number, check_whole

GIB = 1024 ** 3  # the README's GB are mmcv's MiB / 1024
CUDA_KIND = "cuda max_memory_allocated"
CPU_KIND = "cpu peak RSS growth"


@dataclass(frozen=True)
class Speed:
    images: int  # timed images (warm-up excluded)
    seconds: float  # accumulated timed seconds
    detections: float = 0.0  # per timed image: the post-processing load the figure includes

    @property
    def fps(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / self.images


@dataclass(frozen=True)
class Memory:
    bytes: int
    kind: str  # CUDA_KIND or CPU_KIND

    @property
    def gb(self) -> float:
        return self.bytes / GIB


# --- device naming -----------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device | str) -> str:
    """'NVIDIA H100 80GB HBM3 (cuda:0)' or 'AMD EPYC, 2 threads'."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"{torch.cuda.get_device_name(index)} (cuda:{index})"
    threads = torch.get_num_threads()
    return f"{cpu_model()}, {threads} thread{'s' if threads != 1 else ''}"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- speed -------------------------------------------------------------------------------------------------

def time_inference(detector, load: Callable[[int], tuple], images: int = 2000, warmup: int = 5,
                   batch_size: int = 1, progress: Callable[[int], None] | None = None,
                   min_warmup_seconds: float = 2.0) -> Speed:
    """Time `detector.detect_prepared` over `images` images, `batch_size` at a time, the first `warmup`
    iterations untimed. `load(i)` gives image i prepared on the host (inputs.loader_for): (normalised float
    tensor 3xHxW, ImageMeta), or (resized uint8 BGR array or tensor, ImageMeta), which the timed region uploads
    and normalises on the device.

    On a GPU the detector runs through inference.device_path (CUDA graphs, sync-free post-processing), and the
    warm-up lasts at least `min_warmup_seconds` (clocks ramp up, graphs are captured, cuDNN handles are made):
    a model timed first in a process then gives the figure it gives when timed second.
    cuDNN's autotuner is on only where the detector asks for it (Detector's `autotune`, `rdet bench --autotune`),
    off otherwise, as in the reference: with real images of many sizes it tunes each new size inside the timed
    region."""
    check_whole(images, "images")  # 'abc' or 2.5 failed in comparisons or ran a fraction of a batch
    check_whole(warmup, "warmup", 0)
    check_batch_size(batch_size)
    check_number(min_warmup_seconds, "min_warmup_seconds")
    if not callable(load):
        raise ArgumentError(f"load must be a function of the image index (benchmark.inputs.loader_for), not "
                            f"{type(load).__name__}")
    if images <= warmup * batch_size:
        raise RetinaNetError(f"{images} images leave nothing to time after {warmup} warm-up iteration(s) "
                             f"of {batch_size}; use more --images")
    with inference_switches(detector.device, precision=None, cudnn_benchmark=detector.autotune):
        return _timed_loop(detector, load, images, warmup, batch_size, progress,
                           min_warmup_seconds if detector.device.type == "cuda" else 0.0)


def _runner(detector):
    """On CUDA the device path (graphs, device normalisation, sync-free post-processing), as predict runs."""
    path = detector.device_path()
    return (detector, None) if path is None else (path, path.to_device)


def _timed_loop(detector, load, images, warmup, batch_size, progress, min_warmup_seconds) -> Speed:
    device = detector.device
    runner, to_device = _runner(detector)
    to_device = to_device or (lambda image: _host_normalised(detector, image))
    done = timed = iteration = detections = 0
    seconds = warm_seconds = 0.0
    while done < images:
        n = min(batch_size, images - done)
        batch = [load(done + k) for k in range(n)]
        synchronize(device)
        start = time.perf_counter()
        # the reference scatters inside the timed call; a uint8 image is uploaded and normalised there
        moved = [(t.to(device) if _normalised(t) else to_device(t), meta) for t, meta in batch]
        results = runner.detect_prepared(moved, batch_size=n)  # ends in host arrays, as rescale=True results do
        synchronize(device)
        elapsed = time.perf_counter() - start
        warming = iteration < warmup or warm_seconds < min_warmup_seconds
        if warming and images - done - n > 0:  # never warm up the last image away
            warm_seconds += elapsed
        else:
            seconds += elapsed
            timed += n
            detections += sum(len(r) for r in results)
        iteration += 1
        done += n
        if progress is not None:
            progress(n)
    return Speed(timed, seconds, detections / timed if timed else 0.0)


def _normalised(image) -> bool:
    return isinstance(image, torch.Tensor) and image.is_floating_point()


def _host_normalised(detector, image):
    from retinanet.data.preprocess import normalize, upload

    return normalize(upload(image, detector.device), detector.cfg)


# --- memory ------------------------------------------------------------------------------------------------

def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Linux >= 4.0: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmHWM") is not None
    except OSError:
        return False


def _rss_bytes() -> int | None:
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    try:
        import psutil  # optional, for systems without /proc

        return psutil.Process().memory_info().rss
    except Exception:
        return None


class _Sampler(threading.Thread):
    """Fallback without VmHWM: sample the RSS every few milliseconds."""

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, 0, threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            self.peak = max(self.peak, _rss_bytes() or 0)
            self._stop_event.wait(self.interval)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, _rss_bytes() or 0)


def peak_memory(fn: Callable[[], object], device: torch.device | str = "cpu") -> tuple[object, Memory]:
    """Run fn() and return (its result, the peak memory it added over what was in use when it started).

    CUDA: torch.cuda.max_memory_allocated after resetting the peak (in a fresh process this is mmcv's figure).
    CPU: growth of the resident set size, the closest the host offers (it also counts the allocator's slack).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, Memory(max(0, torch.cuda.max_memory_allocated(device) - base), CUDA_KIND)
    if _reset_peak_rss():
        base = _status_kib("VmRSS") * 1024
        result = fn()
        return result, Memory(max(0, _status_kib("VmHWM") * 1024 - base), CPU_KIND)
    base, max_before = _rss_bytes(), (max_rss_bytes() or 0)
    sampler = _Sampler()
    sampler.start()
    try:
        result = fn()
    finally:
        peak = sampler.stop()
    if base is None:  # no current-RSS source at all: ru_maxrss growth, exact only in a fresh process
        return result, Memory(max(0, (max_rss_bytes() or 0) - max_before), CPU_KIND)
    return result, Memory(max(0, peak - base), CPU_KIND)


def synthetic_batch(cfg: ModelConfig, images: int = 2, size: tuple[int, int] = TEST_SCALE,
                    boxes_per_image: int = 8, device: torch.device | str = "cpu", seed: int = 0):
    """(images, gt_boxes, gt_labels, img_shapes) as the training pipeline delivers a batch: `images` W x H
    images normalised and padded to a multiple of 32, with random ground-truth boxes inside them."""
    g = torch.Generator().manual_seed(seed)
    w, h = max(size), min(size)  # landscape, as 1333x800
    ph, pw = -(-h // cfg.size_divisor) * cfg.size_divisor, -(-w // cfg.size_divisor) * cfg.size_divisor
    batch = torch.zeros(images, 3, ph, pw)
    batch[:, :, :h, :w] = torch.randn(images, 3, h, w, generator=g)
    boxes, labels = [], []
    for _ in range(images):
        xy = torch.rand(boxes_per_image, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (0.05 + torch.rand(boxes_per_image, 2, generator=g) * 0.25) * torch.tensor([w, h])
        boxes.append(torch.cat([xy, xy + wh], 1).to(device))
        labels.append(torch.randint(0, cfg.num_classes, (boxes_per_image,), generator=g).to(device))
    return batch.to(device), boxes, labels, [(h, w)] * images


def train_iterations(cfg: ModelConfig, device: torch.device | str, images: int = 2,
                     size: tuple[int, int] = TEST_SCALE, iterations: int = 3) -> None:
    """Build the model and run `iterations` reference training iterations on a synthetic batch."""
    from retinanet.model.losses import retina_loss  # the training code's loss: same assigner, focal and L1 losses
    from retinanet.model.retinanet import RetinaNet

    _check_training_run(cfg, images, size, iterations)
    device = torch.device(device)
    model = RetinaNet(cfg)
    model.init_weights()
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.base_lr, momentum=SGD_MOMENTUM, weight_decay=SGD_WEIGHT_DECAY)
    batch, gt_boxes, gt_labels, shapes = synthetic_batch(cfg, images, size, device=device)
    for _ in range(iterations):
        losses = retina_loss(model, batch, gt_boxes, gt_labels, shapes)
        loss = sum(losses.values())
        # PyTorch 1.4 (the reference's) zero_grad kept the gradient tensors allocated between iterations
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        loss.item()  # the reference logs the loss values every iteration, a host sync
    synchronize(device)


def _check_training_run(cfg, images, size, iterations) -> None:
    """What train_iterations takes: 0 images or a 0x0 size failed deep in torch (a reshape, a 7x7 kernel)."""
    check_config(cfg)
    check_whole(images, "images")
    check_whole(iterations, "iterations")
    check_size(size)


def _child_training_peak(cfg: ModelConfig, device: str, images: int, size, iterations: int, threads: int):
    torch.set_num_threads(threads)
    _, mem = peak_memory(lambda: train_iterations(cfg, device, images, size, iterations), device)
    return mem


def training_memory(cfg: ModelConfig, device: torch.device | str = "cpu", images: int = 2,
                    size: tuple[int, int] = TEST_SCALE, iterations: int = 3, isolate: bool = True) -> Memory:
    """Peak memory of training iterations at the reference setting, in a fresh child process by default
    (a clean baseline, and an out-of-memory failure cannot leave this process in a bad state)."""
    _check_training_run(cfg, images, size, iterations)  # here, not in the child process after it starts
    device = str(torch.device(device))
    if not isolate:
        return _child_training_peak(cfg, device, images, tuple(size), iterations, torch.get_num_threads())
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            return pool.submit(_child_training_peak, cfg, device, images, tuple(size), iterations,
                               torch.get_num_threads()).result()
    except BrokenProcessPool:
        raise RetinaNetError("the memory probe's process died (killed for lack of memory?)") from None


def out_of_memory(error: BaseException) -> bool:
    """errors.exhausted_memory's allocation failures, or any error that says it ran out of memory."""
    return exhausted_memory(error) is not None or "out of memory" in str(error).lower()


def one_line(error: BaseException) -> str:
    """A failure as one short line for a table row."""
    if out_of_memory(error):
        return "out of memory"
    return first_line(error)[:200]


__all__ = ["Speed", "Memory", "device_name", "cpu_model", "time_inference", "peak_memory", "training_memory",
           "train_iterations", "synthetic_batch", "out_of_memory", "one_line", "CUDA_KIND", "CPU_KIND"]
