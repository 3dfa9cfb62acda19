"""RetinaNet's training loss, MMDetection v2.0 semantics (facts sheet 2.6).

Per image, only anchors over the image's own padded area (the valid flags) take part; they are assigned by the
max-IoU rule; every positive and negative anchor contributes a sigmoid focal loss over all K classes (background
is all-zero targets), every positive an L1 loss on its raw deltas. Both sums are divided by the same avg_factor:
the sum over the batch's images of max(positives in the image, 1), with no averaging across processes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from retinanet.model import box_coder
from retinanet.model.assigner import assign
from retinanet.model.head import flatten_anchors
from retinanet.data.preprocess import padded_size

ALPHA, GAMMA = 0.25, 2.0
CHUNK = 1 << 16  # anchors per slice of the element-wise work: bounds the temporaries to CHUNK x K


class WeightedFocalLossSum(torch.autograd.Function):
    """sum over n, k of weights[n] * focal(logits[n, k], target[n, k]), target[n, k] = (labels[n] == k).

    Per element this is exactly torchvision.ops.sigmoid_focal_loss (and v2.0's FocalLoss):
    -alpha (1-p)^gamma log p for the target class, -(1-alpha) p^gamma log(1-p) for the others. What differs is
    memory: autograd through sigmoid_focal_loss keeps about six full-size (anchors x classes) intermediates until
    backward, where MMDetection's fused op keeps none; here only the inputs are kept and the gradient is computed
    analytically, slice by slice, so the training-memory figure stays comparable with the published one.
    """

    @staticmethod
    def forward(ctx, logits, labels, weights, alpha: float, gamma: float):
        ctx.save_for_backward(logits, labels, weights)
        ctx.alpha, ctx.gamma = alpha, gamma
        total = logits.new_zeros((), dtype=_compute_dtype(logits))
        for start in range(0, logits.shape[0], CHUNK):
            x, lab, w = (t[start:start + CHUNK] for t in (logits, labels, weights))
            x = x.to(total.dtype)
            p = torch.sigmoid(x)
            neg = F.logsigmoid(-x).mul_(p.pow_(gamma)).mul_(-(1 - alpha))  # every class as a negative
            rows = torch.nonzero(lab < x.shape[1]).squeeze(1)
            xt = x[rows, lab[rows]]  # then the target class of each positive: swap its term
            pos = -alpha * (1 - torch.sigmoid(xt)).pow(gamma) * F.logsigmoid(xt)
            neg[rows, lab[rows]] = pos
            total += (neg.sum(1) * w).sum()
        return total

    @staticmethod
    def backward(ctx, grad_out):
        logits, labels, weights = ctx.saved_tensors
        alpha, gamma = ctx.alpha, ctx.gamma
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], CHUNK):
            x, lab, w = (t[start:start + CHUNK] for t in (logits, labels, weights))
            x = x.to(_compute_dtype(logits))
            p = torch.sigmoid(x)
            # d/dx of -(1-alpha) p^g log(1-p) = (1-alpha) p^g (p - g (1-p) log(1-p))
            g = F.logsigmoid(-x).mul_(1 - p).mul_(-gamma).add_(p).mul_(p.pow(gamma)).mul_(1 - alpha)
            rows = torch.nonzero(lab < x.shape[1]).squeeze(1)
            xt = x[rows, lab[rows]]
            pt = torch.sigmoid(xt)
            # d/dx of -alpha (1-p)^g log p = alpha (1-p)^g (g p log p - (1-p))
            g[rows, lab[rows]] = alpha * (1 - pt).pow(gamma) * (gamma * pt * F.logsigmoid(xt) - (1 - pt))
            grad[start:start + CHUNK] = g.mul_(w[:, None] * grad_out).to(grad.dtype)
        return grad, None, None, None, None


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if t.dtype == torch.float64 else torch.float32  # half precision logits: float32 arithmetic


def weighted_focal_loss_sum(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                            alpha: float = ALPHA, gamma: float = GAMMA) -> torch.Tensor:
    """Focal loss summed over anchors (N, K logits) x classes, anchor n weighted by weights[n]; labels[n] == K
    means background (every class a negative)."""
    return WeightedFocalLossSum.apply(logits, labels, weights, alpha, gamma)


def flatten_levels(maps: list[torch.Tensor], channels: int) -> torch.Tensor:
    """Per-level (B, A*C, h, w) maps -> (B, sum h*w*A, C), rows in anchor order ((y*w + x)*A + a), P3 first."""
    return torch.cat([flatten_anchors(m, channels) for m in maps], dim=1)


def anchor_targets(anchors: torch.Tensor, valid: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                   num_classes: int):
    """One image's targets: (labels (N,) with num_classes for background, label weights (N,), positive mask (N,),
    encoded box targets of the positives (P, 4))."""
    n = anchors.shape[0]
    assigned = torch.full((n,), -1, dtype=torch.long, device=anchors.device)
    assigned[valid] = assign(anchors[valid], gt_boxes)
    positive = assigned > 0
    labels = torch.full((n,), num_classes, dtype=torch.long, device=anchors.device)
    labels[positive] = gt_labels[assigned[positive] - 1]
    weights = (assigned >= 0).float()  # ignored anchors (IoU in [0.4, 0.5)) and invalid ones count for nothing
    box_targets = box_coder.encode(anchors[positive], gt_boxes[assigned[positive] - 1])
    return labels, weights, positive, box_targets


def retina_loss(model, images: torch.Tensor, gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor],
                img_shapes: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    """{'loss_cls', 'loss_bbox'} of a batch.

    images: (B, 3, H, W) normalised and padded; gt_boxes[i]: (n_i, 4) xyxy in resized-image pixels; gt_labels[i]:
    (n_i,) 0-based; img_shapes[i]: the resized, unpadded (h, w), whose own padded size gives the valid anchors.
    `model` may be wrapped (DistributedDataParallel): the forward goes through the wrapper.
    """
    net = getattr(model, "module", model)
    num_classes, divisor = net.cfg.num_classes, net.cfg.size_divisor
    cls_maps, reg_maps = model(images)
    sizes = [tuple(m.shape[-2:]) for m in cls_maps]
    device = images.device
    anchors = torch.cat(net.anchor_generator.grid_anchors(sizes, device))
    cls_scores = flatten_levels(cls_maps, num_classes).float()  # losses in float32 also under autocast
    deltas = flatten_levels(reg_maps, 4).float()

    cls_losses, box_losses, avg_factor = [], [], 0
    for i, (boxes, labels, shape) in enumerate(zip(gt_boxes, gt_labels, img_shapes)):
        valid = torch.cat(net.anchor_generator.valid_flags(sizes, padded_size(*shape, divisor), device))
        targets, weights, positive, box_targets = anchor_targets(anchors, valid, boxes.to(device).float(),
                                                                 labels.to(device), num_classes)
        cls_losses.append(weighted_focal_loss_sum(cls_scores[i], targets, weights))
        box_losses.append((deltas[i][positive] - box_targets).abs().sum())
        avg_factor += max(int(positive.sum()), 1)
    return {"loss_cls": torch.stack(cls_losses).sum() / avg_factor,
            "loss_bbox": torch.stack(box_losses).sum() / avg_factor}
