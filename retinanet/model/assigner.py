"""MaxIoUAssigner as MMDetection v2.0's RetinaNet configures it (facts sheet 2.6).

Differs from torchvision's Matcher(0.5, 0.4, allow_low_quality_matches=True): every anchor that ties a ground
truth box's best IoU is given to that box, and in ground-truth index order, so a later box overwrites an earlier
one; the low-quality pass also overrides the negative label, and min_pos_iou=0 lets it apply to every box.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou  # inter / (area1 + area2 - inter), no +1 and no eps: v2.0's bbox_overlaps

IGNORE, NEGATIVE = -1, 0


def assign(anchors: torch.Tensor, gt_boxes: torch.Tensor, pos_iou_thr: float = 0.5, neg_iou_thr: float = 0.4,
           min_pos_iou: float = 0.0) -> torch.Tensor:
    """For each anchor (N, 4): -1 ignore, 0 negative, or i + 1 when it is matched to gt_boxes[i] (M, 4)."""
    num_anchors = anchors.shape[0]
    if gt_boxes.numel() == 0:  # no objects in the image: every anchor is background
        return anchors.new_full((num_anchors,), NEGATIVE, dtype=torch.long)
    assigned = anchors.new_full((num_anchors,), IGNORE, dtype=torch.long)
    if num_anchors == 0:
        return assigned
    overlaps = box_iou(gt_boxes.float(), anchors.float())  # (M, N)
    max_overlaps, argmax = overlaps.max(dim=0)
    assigned[(max_overlaps >= 0) & (max_overlaps < neg_iou_thr)] = NEGATIVE
    positive = max_overlaps >= pos_iou_thr
    assigned[positive] = argmax[positive] + 1
    # Low-quality matches: for each box, all anchors equal to its best IoU; the last box in index order wins.
    gt_max = overlaps.max(dim=1).values
    ties = (overlaps == gt_max[:, None]) & (gt_max >= min_pos_iou)[:, None]
    gt_index = torch.arange(1, gt_boxes.shape[0] + 1, device=anchors.device)[:, None]
    last_tie = torch.where(ties, gt_index, torch.zeros_like(gt_index)).max(dim=0).values
    return torch.where(last_tie > 0, last_tie, assigned)
