"""ExportedDetector: the Detector API (predict, detect_prepared) over an exported file, so predict, eval and bench
run an ONNX file or an ExportedProgram exactly as they run a checkpoint."""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from retinanet.data.classes import category_ids
from retinanet.errors import ExportError
from retinanet.export.runtime import open_export
from retinanet.inference.detector import Detector, resolve_device
from retinanet.data.image_meta import ImageMeta
from retinanet.inference.postprocess import detect_single
from retinanet.model.anchors import AnchorGenerator
from retinanet.values import check_path, check_whole


class ExportedDetector(Detector):
    """Images -> detections through an exported file; the pre-processing is the one its metadata records."""

    use_device_path = False  # the runtime runs the network: there is no PyTorch module to graph

    def __init__(self, path: str | os.PathLike, device="auto", threads: int | None = None):
        # Not Detector.__init__: there is no PyTorch model to build, only the attributes its methods read.
        check_path(path, "path")
        if threads is not None:
            check_whole(threads, "threads")
        self.path = Path(path)
        self.device = resolve_device(device)
        self.runner = open_export(self.path, self.device, threads)
        self.info = self.runner.info
        self.cfg = self.info.model_config()
        self.meta, self.model, self.precision = {}, None, self.info.precision
        self._compile, self.compile_seconds = False, 0.0
        self.class_names = self.cfg.names
        self.category_ids = category_ids(self.class_names)
        self.anchor_generator = AnchorGenerator()

    @property
    def runtime(self) -> str:
        return self.runner.description

    def fit_input(self, image: torch.Tensor) -> torch.Tensor:
        """A padded (1, 3, h, w) image as the export takes it: zero-padded to its fixed size, if it has one."""
        if self.info.input_size is None:
            return image
        fixed_h, fixed_w = self.info.input_size
        h, w = image.shape[-2:]
        if h > fixed_h or w > fixed_w:
            raise ExportError(f"{self.path.name} takes a fixed {fixed_w}x{fixed_h} input and this image pads to "
                              f"{w}x{h}; export with --dynamic for any image shape")
        return F.pad(image, (0, fixed_w - w, 0, fixed_h - h))

    @torch.inference_mode()
    def detect_tensors(self, batch: torch.Tensor, metas: list[ImageMeta], score_thr: float | None = None):
        cfg = self.cfg
        thr = cfg.score_thr if score_thr is None else score_thr
        out = []
        for i, meta in enumerate(metas):  # the exported graphs take one image, as the reference's test batch is
            image = self.fit_input(batch[i:i + 1].float())
            if self.info.with_postprocess:
                boxes, scores, labels = self.runner.run(
                    image, torch.tensor(meta.img_shape, dtype=torch.int64),
                    torch.tensor(meta.scale_factor, dtype=torch.float32), torch.tensor(thr, dtype=torch.float32))
                out.append((boxes, scores, labels))
                continue
            maps = self.runner.run(image)
            levels = len(maps) // 2
            cls_scores, bbox_preds = [m[0] for m in maps[:levels]], [m[0] for m in maps[levels:]]
            anchors = self.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls_scores],
                                                         cls_scores[0].device)
            out.append(detect_single(cls_scores, bbox_preds, anchors, meta, nms_pre=cfg.nms_pre, score_thr=thr,
                                     nms_iou=cfg.nms_iou, max_per_img=cfg.max_per_img,
                                     num_classes=cfg.num_classes))
        return out
