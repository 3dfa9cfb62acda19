"""A Detector's inference at the GPU's pace, with the same detections as the plain path (Detector.detect_prepared).

Per image: decode on the host, upload the uint8 image through reused pinned buffers without waiting (staging),
resize on the device (OpenCV's bilinear bit for bit, data.device_resize; on the host with OpenCV itself where
that is not proven for the installed OpenCV), normalise and pad on the device, then forward and post-process
as one CUDA graph per padded size (graphs.GraphedCall; the post-processing is the sync-free one, its geometry a
small tensor, so one graph serves every image of that size), and read the results only at the end, so the host
prepares the next image while the GPU works. On the CPU the same code runs eagerly (no graphs, no pinning), which
is how the tests check it.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from retinanet.data.image_meta import ImageMeta
from retinanet.data.images import image_list, to_bgr
from retinanet.data.device_resize import matches_opencv, resize_uint8
from retinanet.data.preprocess import collate, normalize, planned_meta, resize_with_meta
from retinanet.inference.fast import PRECISIONS
from retinanet.inference.graphs import GraphedCall, graph_safe_autocast
from retinanet.inference.staging import PinnedStaging
from retinanet.inference.sync_free import CAPACITY, FIELDS, Pending, detect_single_fixed, geometry_rows
from retinanet.inference.torch_switches import inference_switches


class DevicePath:
    def __init__(self, detector, graphs: bool = True, max_graphs: int = 4, capture_after: int = 2,
                 capacity: int | None = None, resize_on_device: bool | None = None):
        """`capacity`: candidates the sync-free NMS holds (beyond it an image is redone exactly); None:
        sync_free.CAPACITY on a GPU, 0 on the CPU (the exact NMS, faster there; sync_free's docstring says why).
        `max_graphs`, `capture_after`: graphs.GraphedCall's, per score threshold. `resize_on_device`: None
        decides by the device and the installed OpenCV (see the property)."""
        self.detector = detector
        self.capacity = (CAPACITY if detector.device.type == "cuda" else 0) if capacity is None else capacity
        self._resize_on_device = resize_on_device
        self.graph_options = {"max_graphs": max_graphs if graphs else 0, "capture_after": capture_after}
        self.calls: dict = {}  # GraphedCalls: per score threshold (a constant inside a graph), and the halves
        self.staging = PinnedStaging(detector.device)
        self._cast_models: dict = {}  # dtype -> the model's copy in it (_network)

    @property
    def device(self) -> torch.device:
        return self.detector.device

    @property
    def captures(self) -> int:
        return sum(c.captures for c in self.calls.values())

    @property
    def graphs(self) -> int:
        return sum(len(c.graphs) for c in self.calls.values())

    @property
    def failed(self) -> dict:
        return {k: v for c in self.calls.values() for k, v in c.failed.items()}

    @property
    def resize_on_device(self) -> bool:
        """Resize on the GPU (data.device_resize: OpenCV's bilinear bit for bit, where matches_opencv() proves it
        for the installed OpenCV): the decoded image is uploaded as it is, no host resize."""
        if self._resize_on_device is None:
            self._resize_on_device = self.device.type == "cuda" and matches_opencv()
        return self._resize_on_device

    def host_part(self, bgr: np.ndarray) -> tuple[np.ndarray, ImageMeta]:
        """A decoded BGR image -> (what to upload, geometry): the resized image, or the decoded one as it is when
        the GPU resizes."""
        if self.resize_on_device:
            return bgr, planned_meta(*bgr.shape[:2], self.detector.cfg)
        return resize_with_meta(bgr, self.detector.cfg)

    def upload(self, image) -> torch.Tensor:
        """A uint8 BGR image (array, or tensor pinned by a loader) -> uint8 on the device, not waiting."""
        return self.staging.upload(image)

    def device_part(self, uploaded: torch.Tensor, meta: ImageMeta) -> torch.Tensor:
        """What host_part gave, on the device -> normalised 3xHxW (resized there first if it is not yet)."""
        h, w = meta.img_shape
        if tuple(uploaded.shape[:2]) != (h, w):
            uploaded = resize_uint8(uploaded, w, h)
        return normalize(uploaded, self.detector.cfg)

    def to_device(self, resized) -> torch.Tensor:
        """An already resized uint8 BGR image -> normalised 3xHxW on the device (upload, normalise there)."""
        return normalize(self.upload(resized), self.detector.cfg)

    def prepare(self, image) -> tuple[torch.Tensor, ImageMeta]:
        """(normalised 3xHxW tensor on the device, geometry), as Detector.prepare gives, without a host wait."""
        return self.prepare_bgr(to_bgr(image))

    def prepare_bgr(self, bgr: np.ndarray) -> tuple[torch.Tensor, ImageMeta]:
        host, meta = self.host_part(bgr)
        return self.device_part(self.upload(host), meta), meta

    def _graphed(self, key, fn) -> GraphedCall:
        if key not in self.calls:
            self.calls[key] = GraphedCall(fn, **self.graph_options)
        return self.calls[key]

    def _network(self, dtype: torch.dtype) -> torch.nn.Module:
        """The model with its weights cast to `dtype` once (made on first use, kept). Autocast gives the same
        numbers (it casts each weight and the input to fp16/bf16 and convolves), but inside a graph, where its
        cache must be off, it re-casts all ~110 weights on every call: as many kernels as the convolutions."""
        if dtype not in self._cast_models:
            self._cast_models[dtype] = copy.deepcopy(self.detector.model).to(dtype)
        return self._cast_models[dtype]

    def _forward(self, batch: torch.Tensor) -> tuple:
        """The network on a padded batch: per-level class logits, then box deltas, in float32."""
        det = self.detector
        dtype = PRECISIONS.get(det.precision)
        if dtype is not None and batch.is_cuda and det.optimized:  # a model built for inference only
            cls_scores, bbox_preds = self._network(dtype)(batch.to(dtype))
        else:
            with graph_safe_autocast(batch.device, det.precision):
                cls_scores, bbox_preds = det.model(batch)
        if det.precision in ("fp16", "bf16"):  # post-processing always in float32
            cls_scores, bbox_preds = [c.float() for c in cls_scores], [b.float() for b in bbox_preds]
        return (*cls_scores, *bbox_preds)

    def _postprocess(self, score_thr: float, geometry: torch.Tensor, *maps: torch.Tensor) -> tuple:
        """Sync-free post-processing of _forward's maps: FIELDS tensors per image, flat."""
        cfg = self.detector.cfg
        cls_scores, bbox_preds = maps[:len(maps) // 2], maps[len(maps) // 2:]
        anchors = self.detector.model.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls_scores],
                                                                     geometry.device)
        out: list[torch.Tensor] = []
        for i in range(geometry.shape[0]):
            out.extend(detect_single_fixed([c[i] for c in cls_scores], [r[i] for r in bbox_preds], anchors,
                                           geometry[i], nms_pre=cfg.nms_pre, score_thr=score_thr,
                                           nms_iou=cfg.nms_iou, max_per_img=cfg.max_per_img,
                                           num_classes=cfg.num_classes, capacity=self.capacity))
        return tuple(out)

    def _batch(self, prepared: list[tuple[torch.Tensor, ImageMeta]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(padded batch, its geometry rows) on the device."""
        batch = collate([t for t, _ in prepared], self.detector.cfg.size_divisor)
        if self.detector.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch, self._geometry_on_device([m for _, m in prepared])

    def _pending(self, flat: tuple, score_thr: float) -> list[Pending]:
        cfg = self.detector.cfg
        settings = {"score_thr": score_thr, "nms_iou": cfg.nms_iou, "max_per_img": cfg.max_per_img}
        return [Pending(flat[i:i + FIELDS], settings) for i in range(0, len(flat), FIELDS)]

    def _threshold(self, score_thr: float | None) -> float:
        return float(self.detector.cfg.score_thr if score_thr is None else score_thr)

    def detect_fn(self, score_thr: float):
        """What launch captures as one graph: (padded batch, geometry rows) -> FIELDS tensors per image, flat."""
        return lambda batch, geometry: self._postprocess(score_thr, geometry, *self._forward(batch))

    def _switches(self):
        """As Detector.detect_tensors: fp32 on CUDA with TF32 off, the autotuner on where the detector asks."""
        det = self.detector
        return inference_switches(self.device, det.precision, cudnn_benchmark=det.autotune or None)

    @torch.inference_mode()
    def launch(self, prepared: list[tuple[torch.Tensor, ImageMeta]], score_thr: float | None = None) -> list[Pending]:
        """Queue forward and post-processing of images of one padded size, as one graph; nothing waits."""
        thr = self._threshold(score_thr)
        batch, geometry = self._batch(prepared)
        call = self._graphed(thr, self.detect_fn(thr))
        with self._switches():
            return self._pending(call(batch, geometry), thr)

    @torch.inference_mode()
    def forward(self, prepared: list[tuple[torch.Tensor, ImageMeta]]) -> tuple:
        """launch's first half alone (its own graph), for timing stages: the network's maps and the geometry."""
        batch, geometry = self._batch(prepared)
        with self._switches():
            return (geometry, *self._graphed("forward", self._forward)(batch))

    @torch.inference_mode()
    def postprocess(self, forwarded: tuple, score_thr: float | None = None) -> list[Pending]:
        """launch's second half alone (its own graph), on what forward() gave."""
        thr = self._threshold(score_thr)
        call = self._graphed(("post", thr), lambda g, *maps: self._postprocess(thr, g, *maps))
        with self._switches():
            return self._pending(call(*forwarded), thr)

    def _geometry_on_device(self, metas: list[ImageMeta]) -> torch.Tensor:
        """The batch's geometry rows (sync_free.geometry_rows) on the device, uploaded without waiting."""
        rows = geometry_rows(metas)
        if self.device.type == "cuda":
            rows = rows.pin_memory()
        return rows.to(self.device, non_blocking=True)

    def finish(self, pending: list[Pending], metas: list[ImageMeta]):
        """Read queued results: Detections in original pixels (the one host wait)."""
        return [self.detector._wrap(*p.read(), meta) for p, meta in zip(pending, metas)]

    def queue(self, prepared: list[tuple[torch.Tensor, ImageMeta]], score_thr=None, batch_size: int = 1) -> list:
        """Queue every image, in batches only of images with the same padded size; collect() reads them."""
        groups: dict[tuple, list[int]] = {}
        for i, (_, meta) in enumerate(prepared):
            groups.setdefault(meta.pad_shape, []).append(i)
        queued = []
        for idxs in groups.values():
            for start in range(0, len(idxs), max(1, batch_size)):
                chunk = idxs[start:start + max(1, batch_size)]
                queued.append((chunk, [prepared[i][1] for i in chunk],
                               self.launch([prepared[i] for i in chunk], score_thr)))
        return queued

    def collect(self, queued: list) -> list:
        """Detections of queued images, in their input order (the host waits here)."""
        results: list = [None] * sum(len(chunk) for chunk, _, _ in queued)
        for chunk, metas, pending in queued:
            for i, dets in zip(chunk, self.finish(pending, metas)):
                results[i] = dets
        return results

    def detect_prepared(self, prepared: list[tuple[torch.Tensor, ImageMeta]], score_thr=None, batch_size: int = 1):
        """Detector.detect_prepared's contract: batches only of images with the same padded size, input order."""
        return self.collect(self.queue(prepared, score_thr, batch_size))

    def predict(self, images, score_thr: float | None = None, batch_size: int = 1):
        return self.detect_prepared([self.prepare(im) for im in image_list(images)], score_thr, batch_size)
