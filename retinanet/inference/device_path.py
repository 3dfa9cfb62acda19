"""A Detector's inference at the GPU's pace, with the same detections as Detector.predict.

Per image: decode and resize on the host (OpenCV's bilinear, the reference's; a GPU resize would differ by a grey
level), upload the uint8 result through pinned memory without waiting, normalise and pad on the device, run the
forward as a CUDA graph (graphs.GraphedForward), post-process without host synchronisation (sync_free), and read
the results only at the end, so the host prepares the next image while the GPU works. On the CPU the same code
runs eagerly (no graphs, no pinning), which is how the tests check it.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from retinanet.data.images import to_bgr
from retinanet.data.preprocess import collate, normalize, resize_with_meta, upload
from retinanet.inference.graphs import GraphedForward
from retinanet.inference.torch_switches import inference_switches
from retinanet.data.image_meta import ImageMeta
from retinanet.inference.sync_free import CAPACITY, Pending, detect_single_fixed


class DevicePath:
    def __init__(self, detector, graphs: bool = True, max_graphs: int = 4, capture_after: int = 2,
                 capacity: int = CAPACITY):
        """`capacity`: candidates the sync-free NMS holds (sync_free.CAPACITY; beyond it an image is redone
        exactly)."""
        self.detector, self.capacity = detector, capacity
        self.forward_pass = GraphedForward(detector.model, detector.precision,
                                           max_graphs=max_graphs if graphs else 0, capture_after=capture_after)

    @property
    def device(self) -> torch.device:
        return self.detector.device

    def resize(self, image) -> tuple[np.ndarray, ImageMeta]:
        """Host part: a path, PIL image or RGB array -> (resized BGR uint8, geometry)."""
        return self.resize_bgr(to_bgr(image))

    def resize_bgr(self, bgr: np.ndarray) -> tuple[np.ndarray, ImageMeta]:
        return resize_with_meta(bgr, self.detector.cfg)

    def to_device(self, resized: np.ndarray) -> torch.Tensor:
        """A resized uint8 BGR image -> normalised 3xHxW on the device (upload, then normalise there)."""
        return normalize(upload(resized, self.device), self.detector.cfg)

    def prepare(self, image) -> tuple[torch.Tensor, ImageMeta]:
        """(normalised 3xHxW tensor on the device, geometry), as Detector.prepare gives, without a host wait."""
        resized, meta = self.resize(image)
        return self.to_device(resized), meta

    @torch.inference_mode()
    def forward(self, prepared: list[tuple[torch.Tensor, ImageMeta]]):
        """Queue the forward of images of one padded size as one batch: (class logits, box deltas) per level."""
        det = self.detector
        batch = collate([t for t, _ in prepared], det.cfg.size_divisor)
        if det.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with inference_switches(self.device, det.precision):  # fp32 on CUDA: TF32 off, as Detector does
            return self.forward_pass(batch)

    @torch.inference_mode()
    def postprocess(self, outputs, metas: list[ImageMeta], score_thr: float | None = None) -> list[Pending]:
        """Queue the post-processing of a batch's head outputs; nothing waits."""
        det, cfg = self.detector, self.detector.cfg
        cls_scores, bbox_preds = outputs
        if det.precision in ("fp16", "bf16"):  # post-processing always in float32
            cls_scores, bbox_preds = [c.float() for c in cls_scores], [b.float() for b in bbox_preds]
        anchors = det.model.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls_scores],
                                                          cls_scores[0].device)
        thr = cfg.score_thr if score_thr is None else score_thr
        return [detect_single_fixed([c[i] for c in cls_scores], [r[i] for r in bbox_preds], anchors, meta,
                                    nms_pre=cfg.nms_pre, score_thr=thr, nms_iou=cfg.nms_iou,
                                    max_per_img=cfg.max_per_img, num_classes=cfg.num_classes,
                                    capacity=self.capacity)
                for i, meta in enumerate(metas)]

    def launch(self, prepared: list[tuple[torch.Tensor, ImageMeta]], score_thr: float | None = None) -> list[Pending]:
        """Queue forward and post-processing of images of one padded size; nothing waits."""
        return self.postprocess(self.forward(prepared), [m for _, m in prepared], score_thr)

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
        if isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "getpixel"):
            images = [images]
        return self.detect_prepared([self.prepare(im) for im in images], score_thr, batch_size)
