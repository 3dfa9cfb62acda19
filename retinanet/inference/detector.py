"""Detector: a RetinaNet with its weights, ready to turn images into detections in original pixels."""
from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from retinanet.model.checkpoint import load_state, read_checkpoint, with_checkpoint_classes
from retinanet.data.classes import category_ids
from retinanet.config import ModelConfig, check_config
from retinanet.inference.fast import autocast as fast_autocast
from retinanet.inference.fast import channels_last_for, compile_model, optimize_for_inference
from retinanet.data.images import image_list, to_bgr
from retinanet.model.retinanet import RetinaNet
from retinanet.data.image_meta import ImageMeta
from retinanet.inference.postprocess import detect_single
from retinanet.inference.torch_switches import inference_switches
from retinanet.data.preprocess import collate, prepare
from retinanet.data.read_ahead import read_ahead
from retinanet.errors import ArgumentError, ImageError
from retinanet.values import check_batch_size, check_flag, check_fraction, check_path, is_whole


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" (CUDA when present), "cpu", "cuda" or "cuda:N"; RetinaNetError (one line) for anything else."""
    from retinanet.errors import RetinaNetError

    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise RetinaNetError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise RetinaNetError(f"device '{device}' is not supported: use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RetinaNetError(f"device {device} asked for, but CUDA is not available here")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise RetinaNetError(f"device {device} asked for, but there are {torch.cuda.device_count()} CUDA devices")
    return dev


@dataclass
class Detections:
    """Detections of one image, sorted by descending score. Boxes are xyxy floats in original pixels."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64, 0-based
    class_names: tuple[str, ...] = ()
    category_ids: tuple[int, ...] = ()
    width: int = 0
    height: int = 0
    meta: ImageMeta | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        return [self.class_names[i] for i in self.labels]

    def to_list(self) -> list[dict]:
        return [{"bbox": [float(v) for v in b], "score": float(s), "label": int(lab),
                 "category_id": int(self.category_ids[lab]), "class": self.class_names[lab]}
                for b, s, lab in zip(self.boxes, self.scores, self.labels)]

    def to_coco(self, image_id) -> list[dict]:
        """COCO results format: bbox as [x, y, w, h] with w = x2 - x1 (no +1), subtracted in float64 after the
        float32 corners become Python floats, as the reference's xyxy2xywh (bbox.tolist() first)."""
        if not is_whole(image_id):  # COCOeval matches ids by value: '42' would match no image, silently
            raise ArgumentError(f"image_id must be an integer (the COCO image's id), not {image_id!r}")
        image_id = int(image_id)  # a NumPy integer as Python's, which JSON writes
        return [{"image_id": image_id, "category_id": int(self.category_ids[lab]),
                 "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
                for (x1, y1, x2, y2), s, lab in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist())]


@dataclass
class FileResult:
    """What `Detector.predict_files` / `predict_frames` give for one input: its detections or its one-line error."""

    path: str  # the input as named: a path, a URL, a video or a stream
    detections: Detections | None = None
    error: str | None = None  # why the input could not be read (detections is then None)
    image: np.ndarray | None = field(default=None, repr=False)  # the decoded HxWx3 uint8 image, RGB (for drawing)
    seconds: float = 0.0  # inference time of this image: its batch's time shared out, torch.compile excluded
    frame: int | None = None  # the frame number in a video or stream; None for a still image
    fps: float | None = None  # of that video or stream


class Detector:
    """Build from a ModelConfig and (optionally) a reference-format weights file.

    On a CUDA device predict, predict_files and predict_frames run through the GPU path
    (inference.device_path.DevicePath: CUDA graphs, device pre-processing, sync-free post-processing; the same
    detections within the GPU's own rounding); set `use_device_path = False` for the plain path.

    >>> det = Detector(ModelConfig(depth=50), "retinanet_r50_fpn_1x_coco.pth", device="cpu")
    >>> det.predict(["a.jpg"])[0].boxes
    """

    optimized = channels_last = autotune = False  # what __init__ sets (ExportedDetector does not call it)
    use_device_path = True  # on CUDA (ExportedDetector: its runtime is no PyTorch module to graph)
    # frames predict_frames decodes ahead in a thread (data.read_ahead); None: a batch (at least 2) on CUDA, where
    # decoding takes as long as detecting; 0 on the CPU, where detecting takes seconds and decoding milliseconds
    read_ahead_frames: int | None = None

    def __init__(self, cfg: ModelConfig, weights: str | os.PathLike | None = None, device="auto",
                 model: RetinaNet | None = None, *, precision: str = "fp32", fast: bool = True,
                 compile: bool = False, layout: str = "auto", autotune: bool = False):
        """`precision`: fp32 (the reference's numbers), tf32, bf16 or fp16 (CUDA) autocast. `fast`: fold BatchNorm
        into the convolutions and fuse ReLUs (same detections; only for a model built here, never for one passed
        in, which may still be training), in memory `layout` channels_last, nchw, or auto: the faster one measured
        (fast.channels_last_for). `compile`: torch.compile on first use. `autotune`: cuDNN's autotuner measures
        each convolution's algorithms on the first call of an input size instead of taking its heuristics' pick
        (seconds more on that call, then often faster: for one size many times, as bench, a video or a stream)."""
        check_config(cfg)
        if weights is not None:
            check_path(weights, "weights")
        for flag, value in (("fast", fast), ("compile", compile), ("autotune", autotune)):
            check_flag(value, flag)
        self.device = resolve_device(device)
        fast_autocast(self.device, precision)  # validates precision against the device up front
        self.precision = precision
        built_here = model is None
        meta = {}
        if weights is not None:
            ckpt = read_checkpoint(weights)
            meta = ckpt["meta"]
            cfg = with_checkpoint_classes(cfg, meta)
        self.cfg = cfg
        self.meta = meta
        if model is None:
            model = RetinaNet(cfg)
            if weights is None:  # random weights (benchmarks, tests): the reference's training-start init
                model.init_weights()
        self.model = model
        if weights is not None:
            load_state(self.model, ckpt["state_dict"], source=str(weights))
        self.model.eval().to(self.device)
        self.optimized = fast and built_here  # a model for inference only (DevicePath may cast a copy of it)
        self.channels_last = self.optimized and channels_last_for(self.device, precision, layout, autotune)
        self.autotune = autotune
        if self.optimized:
            # fused ops have no torch.compile rules; oneDNN's none for autocast either (cuDNN's are cast in fused.py)
            optimize_for_inference(self.model, self.device, channels_last=self.channels_last,
                                   fuse=not compile and (precision == "fp32" or self.device.type == "cuda"))
        self._compile = compile
        self.compile_seconds = 0.0
        self._device_path = None
        self.class_names = cfg.names
        self.category_ids = category_ids(self.class_names)

    def device_path(self):
        """The DevicePath that predict uses on CUDA (made once: it holds the captured graphs), or None where the
        plain path runs: the CPU, torch.compile, or use_device_path off."""
        if self.device.type != "cuda" or self._compile or not self.use_device_path:
            return None
        if self._device_path is None:
            from retinanet.inference.device_path import DevicePath

            self._device_path = DevicePath(self)
        return self._device_path

    def _detect_prepared_fast(self, prepared, score_thr, batch_size) -> list[Detections]:
        path = self.device_path()
        if path is None:
            return self.detect_prepared(prepared, score_thr=score_thr, batch_size=batch_size)
        return path.detect_prepared(prepared, score_thr, batch_size)

    def _prepare_fast(self, bgr: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
        path = self.device_path()
        return prepare(bgr, self.cfg, self.device) if path is None else path.prepare_bgr(bgr)

    @property
    def runtime(self) -> str:
        """What runs the network (bench shows it beside the speed); an ExportedDetector names its runtime."""
        return f"PyTorch ({self.device.type})"

    @torch.inference_mode()
    def detect_tensors(self, batch: torch.Tensor, metas: list[ImageMeta], score_thr: float | None = None):
        """Padded normalised batch (B, 3, H, W) on self.device -> [(boxes, scores, labels)] per image."""
        with inference_switches(self.device, self.precision, cudnn_benchmark=self.autotune or None):
            return self._detect_tensors(batch, metas, score_thr)

    def _detect_tensors(self, batch, metas, score_thr):
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        if self._compile:
            self.model, self.compile_seconds = compile_model(self.model, batch, self.precision)
            self._compile = False
        with fast_autocast(self.device, self.precision):
            cls_scores, bbox_preds = self.model(batch)
        if self.precision != "fp32":  # post-processing (decode, NMS) always in float32
            cls_scores, bbox_preds = [c.float() for c in cls_scores], [b.float() for b in bbox_preds]
        sizes = [tuple(c.shape[-2:]) for c in cls_scores]
        anchors = self.model.anchor_generator.grid_anchors(sizes, batch.device)
        cfg = self.cfg
        out = []
        for i, meta in enumerate(metas):
            out.append(detect_single([c[i] for c in cls_scores], [r[i] for r in bbox_preds], anchors, meta,
                                     nms_pre=cfg.nms_pre, score_thr=cfg.score_thr if score_thr is None else score_thr,
                                     nms_iou=cfg.nms_iou, max_per_img=cfg.max_per_img,
                                     num_classes=cfg.num_classes))
        return out

    def prepare(self, image) -> tuple[torch.Tensor, ImageMeta]:
        """A path, PIL image or RGB array -> (normalised tensor on self.device, geometry)."""
        return prepare(to_bgr(image), self.cfg, self.device)

    def predict(self, images, score_thr: float | None = None, batch_size: int = 1) -> list[Detections]:
        """Detections for each image (paths, PIL images, HxWx3 RGB uint8 arrays or encoded files' bytes), in
        input order.

        Images are batched only with others of the same padded size, so a batch gives exactly the detections of
        one image at a time (padding a batch to a common size would change the border features).
        """
        _check_call(score_thr, batch_size)
        prepared = [self._prepare_fast(to_bgr(im)) for im in image_list(images)]
        return self._detect_prepared_fast(prepared, score_thr, batch_size)

    def predict_files(self, paths: Iterable[str | os.PathLike], score_thr: float | None = None,
                      batch_size: int = 1) -> Iterator[FileResult]:
        """One FileResult per image file, in input order, batches of `batch_size` files: unreadable files are
        reported with their error, the others detected together."""
        from retinanet.data.sources import Input, frames

        _check_call(score_thr, batch_size)  # here too: the generator below would check only when first read
        if isinstance(paths, (str, os.PathLike)):  # one file, not a sequence of one-letter names
            paths = [paths]
        elif not isinstance(paths, Iterable):
            raise ArgumentError(f"predict_files takes a path or an iterable of paths, not {type(paths).__name__}")
        return self.predict_frames(frames([Input("image", _file_name(p)) for p in paths]), score_thr, batch_size)

    def predict_frames(self, frames: Iterable, score_thr: float | None = None,
                       batch_size: int = 1) -> Iterator[FileResult]:
        """One FileResult per retinanet.data.sources.Frame (images, URLs, video and stream frames), in input
        order, read and detected `batch_size` at a time; a frame that could not be read gives its error. Lazy:
        a live stream is detected frame by frame as it arrives. The next frames are decoded in a thread meanwhile
        where `read_ahead_frames` says so (on CUDA by default)."""
        from retinanet.data.sources import Frame

        _check_call(score_thr, batch_size)
        if not isinstance(frames, Iterable) or isinstance(frames, (str, bytes, os.PathLike)):
            raise ArgumentError(f"predict_frames takes an iterable of retinanet.data.sources.Frame, not "
                                f"{type(frames).__name__} (predict_files takes paths)")
        frames = read_ahead(frames, self._read_ahead_depth(batch_size))
        while chunk := list(itertools.islice(frames, max(1, batch_size))):
            t0, compiling = time.perf_counter(), self.compile_seconds
            prepared, errors = {}, {}
            for f in chunk:
                if not isinstance(f, Frame):
                    raise ArgumentError(f"predict_frames takes retinanet.data.sources.Frame items, not "
                                        f"{type(f).__name__} (predict_files takes paths)")
                if f.error is None:
                    try:
                        prepared[id(f)] = self._prepare_fast(f.image)
                    except ImageError as e:  # decoded but unusable (too thin to resize): skipped like unreadable
                        errors[id(f)] = f"{f.source}{'' if f.index is None else f' frame {f.index}'}: {e}"
            dets = self._detect_prepared_fast(list(prepared.values()), score_thr, batch_size) if prepared else []
            per_image = (time.perf_counter() - t0 - (self.compile_seconds - compiling)) / max(len(prepared), 1)
            found = dict(zip(prepared, dets))
            for f in chunk:
                d = found.get(id(f))
                yield FileResult(f.source, d, f.error or errors.get(id(f)), None if d is None else f.image[:, :, ::-1],
                                 per_image if d is not None else 0.0, f.index, f.fps)

    def _read_ahead_depth(self, batch_size: int) -> int:
        if self.read_ahead_frames is not None:
            return self.read_ahead_frames
        return max(2, batch_size) if self.device.type == "cuda" else 0

    def detect_prepared(self, prepared: list[tuple[torch.Tensor, ImageMeta]], score_thr=None,
                        batch_size: int = 1) -> list[Detections]:
        _check_call(score_thr, batch_size)  # 0 ran as 1, a score_thr of 1.5 gave nothing, without a word
        results: list[Detections | None] = [None] * len(prepared)
        groups: dict[tuple, list[int]] = {}
        for i, (_, meta) in enumerate(prepared):
            groups.setdefault(meta.pad_shape, []).append(i)
        for idxs in groups.values():
            for start in range(0, len(idxs), max(1, batch_size)):
                chunk = idxs[start:start + max(1, batch_size)]
                batch = collate([prepared[i][0] for i in chunk], self.cfg.size_divisor)
                metas = [prepared[i][1] for i in chunk]
                for i, meta, (b, s, lab) in zip(chunk, metas, self.detect_tensors(batch, metas, score_thr)):
                    results[i] = self._wrap(b, s, lab, meta)
        return results  # type: ignore[return-value]

    def _wrap(self, boxes, scores, labels, meta: ImageMeta) -> Detections:
        return Detections(boxes.float().cpu().numpy(), scores.float().cpu().numpy(), labels.cpu().numpy(),
                          self.class_names, self.category_ids, meta.ori_shape[1], meta.ori_shape[0], meta)


def _file_name(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentError(f"predict_files takes paths (str or os.PathLike), not {path!r}")
    return os.fsdecode(path)  # a str as it is; a bytes path decoded as the file system does


def _check_call(score_thr, batch_size) -> None:
    """What predict and predict_frames take, checked up front (not deep in post-processing, or silently as 1)."""
    if score_thr is not None:
        check_fraction(score_thr, "score_thr")
    check_batch_size(batch_size)
