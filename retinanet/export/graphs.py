"""The modules that are exported: the network alone, or the network followed by the reference's post-processing.

`NetworkGraph` maps one padded normalised image (1, 3, H, W) to the head's per-level maps, 5 class-logit maps then
5 delta maps; whoever runs it applies `postprocess.detect_single`, the same code the PyTorch path runs.

`DetectionGraph` adds anchors, the per-level top-k, decoding, clipping, rescaling, the score threshold and the
class-wise NMS, written with the reference path's own functions where a graph allows it. Where it cannot, the
graph form computes the same values:
- the reference skips its top-k when a level has no more than nms_pre anchors; with a dynamic input size the
  graph takes the top min(nms_pre, n) and, when that is every anchor, puts them back in anchor order;
- the zero-size-box filter and the empty-input shortcut are data-dependent branches: the graph always applies the
  filter (a no-op when nothing is zero-size) and takes the NMS offset from max(boxes, 0), which equals the
  reference's max(boxes) because clipped, rescaled boxes are never negative;
- NMS is torchvision's `nms` on the same offset float32 boxes; torch.onnx turns it into one single-class ONNX
  NonMaxSuppression (see README, Export, for where that operator differs and why the result stays the same).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import nms

from retinanet.model import box_coder
from retinanet.model.anchors import AnchorGenerator
from retinanet.inference.postprocess import select_level

CLS_OUTPUTS = tuple(f"cls_p{i}" for i in range(3, 8))
REG_OUTPUTS = tuple(f"reg_p{i}" for i in range(3, 8))
NETWORK_OUTPUTS = CLS_OUTPUTS + REG_OUTPUTS
DETECTION_INPUTS = ("image", "img_shape", "scale_factor", "score_thr")
DETECTION_OUTPUTS = ("boxes", "scores", "labels")


class NetworkGraph(nn.Module):
    """image (1, 3, H, W) float32 -> cls_p3..cls_p7 (1, A*K, h, w), reg_p3..reg_p7 (1, A*4, h, w), float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.dtype = dtype

    def forward(self, image: torch.Tensor):
        cls_scores, bbox_preds = self.model(image.to(self.dtype))
        return tuple(t.float() for t in (*cls_scores, *bbox_preds))


def select_level_any_size(scores: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, nms_pre: int):
    """`select_level` for a level whose anchor count is only known when the graph runs."""
    n = scores.shape[0]
    if isinstance(n, int):  # a fixed input size: the reference's own function, its branch decided now
        return select_level(scores, deltas, anchors, nms_pre)
    top = scores.max(dim=1).values.topk(torch.sym_min(nms_pre, n)).indices
    # every anchor kept: the reference skipped the top-k, so they stay in anchor order
    keep = torch.where(torch.tensor(n <= nms_pre), top.sort().values, top)
    return scores[keep], deltas[keep], anchors[keep]


def class_wise_nms_graph(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float):
    """postprocess.class_wise_nms (offset trick, float32), with the offset's max safe on zero boxes."""
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    offsets = labels.to(boxes) * (top + 1)
    return nms(boxes + offsets[:, None], scores, iou)


class DetectionGraph(nn.Module):
    """(image (1, 3, H, W), img_shape int64 [h, w] of the resized image, scale_factor float32 [w_scale, h_scale],
    score_thr float32 scalar) -> boxes (N, 4) xyxy in original pixels, scores (N,), labels (N,) int64."""

    def __init__(self, model: nn.Module, num_classes: int, *, nms_pre: int, nms_iou: float, max_per_img: int,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.network = NetworkGraph(model, dtype)
        self.num_classes = num_classes
        self.nms_pre, self.nms_iou, self.max_per_img = nms_pre, nms_iou, max_per_img
        generator = AnchorGenerator()
        self.strides = generator.strides
        for level, base in enumerate(generator.base_anchors):
            self.register_buffer(f"base_anchors_{level}", base, persistent=False)

    def forward(self, image, img_shape, scale_factor, score_thr):
        maps = self.network(image)
        levels = len(self.strides)
        scores, deltas, kept = [], [], []
        for level in range(levels):
            cls, reg = maps[level][0], maps[levels + level][0]
            base = getattr(self, f"base_anchors_{level}")
            anchors = AnchorGenerator._level(base, self.strides[level], cls.shape[-2:], cls.device)
            s = cls.permute(1, 2, 0).reshape(-1, self.num_classes).sigmoid()
            d = reg.permute(1, 2, 0).reshape(-1, 4)
            s, d, a = select_level_any_size(s, d, anchors, self.nms_pre)
            scores.append(s)
            deltas.append(d)
            kept.append(a)
        scores = torch.cat(scores)
        bounds = img_shape.to(torch.float32)
        boxes = box_coder.decode(torch.cat(kept), torch.cat(deltas), max_shape=(bounds[0], bounds[1]))
        boxes = boxes / torch.stack([scale_factor[0], scale_factor[1], scale_factor[0], scale_factor[1]])
        return self._filter_and_nms(boxes, scores, score_thr)

    def _filter_and_nms(self, boxes, scores, score_thr):
        """postprocess.filter_and_nms without its data-dependent shortcuts (same results)."""
        idx, labels = (scores > score_thr).nonzero(as_tuple=True)
        boxes, scores = boxes[idx], scores[idx, labels]
        sized = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).nonzero().reshape(-1)
        boxes, scores, labels = boxes[sized], scores[sized], labels[sized]
        keep = class_wise_nms_graph(boxes, scores, labels, self.nms_iou)
        if self.max_per_img > 0:
            keep = keep[: self.max_per_img]
        return boxes[keep], scores[keep], labels[keep]
