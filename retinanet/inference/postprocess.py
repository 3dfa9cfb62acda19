"""Test-time post-processing of one image, as MMDetection's AnchorHead does it (v2.0 rules).

Per level: sigmoid scores, keep the top `nms_pre` anchors by their best class score (all their class scores
stay), decode and clip to the resized image. Then: rescale to original pixels (before NMS), keep every
(box, class) pair scoring > score_thr, drop boxes with no width or height, class-wise NMS at IoU > nms_iou, keep
the best max_per_img. Zero-size boxes (anchors clipped away at the border) are dropped as MMDetection 3.x does
(min_bbox_size=0); v2.0 kept them, but they can never match a ground truth box.
"""
from __future__ import annotations

import torch
from torchvision.ops import nms

from retinanet.data.image_meta import ImageMeta
from retinanet.model import box_coder
from retinanet.model.head import flatten_anchors


def select_level(scores: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor, nms_pre: int):
    """Top-`nms_pre` anchors of one level by their best class score (the v2.0 rule)."""
    if 0 < nms_pre < scores.shape[0]:
        _, keep = scores.max(dim=1).values.topk(nms_pre)
        return scores[keep], deltas[keep], anchors[keep]
    return scores, deltas, anchors


def class_wise_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float) -> torch.Tensor:
    """NMS within each class by the coordinate-offset trick on float32 boxes, exactly as the reference.

    torchvision's batched_nms switches to a per-class loop for many boxes; the result is the same up to float
    rounding of the offset, so we keep the reference's single offset NMS for bit-level parity.
    """
    offsets = labels.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou)


def candidates(cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor], anchors: list[torch.Tensor],
               meta: ImageMeta, *, nms_pre=1000, num_classes: int | None = None):
    """Per-level head outputs (C, H, W) of one image -> its kept anchors' boxes (M, 4), in original pixels, and
    class scores (M, K). No host synchronisation: every size follows from the feature map sizes."""
    scores, deltas, kept_anchors = [], [], []
    for cls, reg, anc in zip(cls_scores, bbox_preds, anchors):  # the top-k is per level: a loop of 5
        k = num_classes or cls.shape[0] * 4 // reg.shape[0]
        s = flatten_anchors(cls, k).sigmoid()
        d = flatten_anchors(reg, 4)
        s, d, a = select_level(s, d, anc, nms_pre)
        scores.append(s)
        deltas.append(d)
        kept_anchors.append(a)
    scores = torch.cat(scores)
    # decoding is element-wise: one call for all levels gives each level's boxes unchanged
    boxes = box_coder.decode(torch.cat(kept_anchors), torch.cat(deltas), max_shape=meta.img_shape)
    scale = boxes.new_empty(4)  # filled on the device: a tensor built from a list would be a synchronising copy
    scale[0::2], scale[1::2] = meta.scale_factor
    return boxes / scale, scores


def detect_single(cls_scores: list[torch.Tensor], bbox_preds: list[torch.Tensor], anchors: list[torch.Tensor],
                  meta: ImageMeta, *, nms_pre=1000, score_thr=0.05, nms_iou=0.5, max_per_img=100,
                  num_classes: int | None = None):
    """Detections of one image from its per-level head outputs (C, H, W) -> (boxes xyxy, scores, labels)."""
    boxes, scores = candidates(cls_scores, bbox_preds, anchors, meta, nms_pre=nms_pre, num_classes=num_classes)
    return filter_and_nms(boxes, scores, score_thr=score_thr, nms_iou=nms_iou, max_per_img=max_per_img)


def filter_and_nms(boxes: torch.Tensor, scores: torch.Tensor, *, score_thr=0.05, nms_iou=0.5, max_per_img=100):
    """From (N, 4) boxes and (N, K) scores: threshold, class-wise NMS, top max_per_img, by descending score."""
    mask = scores > score_thr
    idx, labels = mask.nonzero(as_tuple=True)
    boxes, scores = boxes[idx], scores[idx, labels]
    sized = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if not bool(sized.all()):
        boxes, scores, labels = boxes[sized], scores[sized], labels[sized]
    if boxes.numel() == 0:
        return boxes.reshape(0, 4), scores.reshape(0), labels.reshape(0)
    keep = class_wise_nms(boxes, scores, labels, nms_iou)
    if max_per_img > 0:
        keep = keep[:max_per_img]
    return boxes[keep], scores[keep], labels[keep]
