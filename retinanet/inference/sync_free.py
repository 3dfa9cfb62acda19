"""Post-processing without host synchronisation: the same detections as postprocess.detect_single, in fixed-size
tensors that the GPU computes while the host goes on (it only waits when the results are read).

detect_single synchronises three times (the score threshold's nonzero(), the zero-size check, and torchvision's
nms, which copies its suppression mask to the host for the greedy scan). Here every size is fixed:

- candidates: the `capacity` best (anchor, class) pairs, of which those above score_thr and with a non-zero box
  are valid (the rest are carried along, never kept and never suppressing);
- class-wise NMS: the same offset boxes and IoU formula as torchvision's nms, as an N x N "suppresses" matrix in
  the same greedy order (descending score, ties by anchor-major index as nonzero() lists them); the greedy result
  is the fixed point of keep = valid & not (some kept earlier box suppresses it), reached by iterating;
- output: the first max_per_img kept (a stable sort puts them first), with their count.

Exactness is checked when the results are read (one host copy): if more than `capacity` pairs passed the
threshold or the iteration had not converged, that image is redone by detect_single's exact path. Capacity 0
skips the fixed-size NMS altogether (the CPU's choice: there is no host synchronisation to avoid there, and an
N x N matrix costs far more than the greedy scan).
"""
from __future__ import annotations

import torch

from retinanet.inference.postprocess import candidates, filter_and_nms

CAPACITY = 4096  # candidates into NMS; a trained model passes ~2000 at score_thr 0.05
ROUNDS = 12  # fixed-point iterations: suppression chains on real images are a few boxes long


class Pending:
    """One image's fixed-size results, still on the device, and what an exact recomputation needs.

    On a GPU the packed results start for the host as soon as they are queued: a non-blocking copy into pinned
    memory right behind this image's kernels, with an event after it. Reading then waits for this image alone.
    A plain `.cpu()` at read time would queue the copy behind everything queued since (the next images' graphs)
    and wait for all of it, which undoes eval's pipelining: the GPU would idle while the host stores results and
    queues the next image."""

    def __init__(self, outputs: tuple[torch.Tensor, ...], settings: dict):
        """`outputs`: what fixed_filter_and_nms gives (FIELDS tensors); `settings`: filter_and_nms's options."""
        self.packed, self.all_boxes, self.all_scores = outputs
        self.settings = settings
        self.host = self.packed  # where read() finds them: on the CPU, where they are made
        self.copied: torch.cuda.Event | None = None
        if self.packed.is_cuda:
            self.host = torch.empty(self.packed.shape, dtype=self.packed.dtype, pin_memory=True)
            self.host.copy_(self.packed, non_blocking=True)
            self.copied = torch.cuda.Event()
            self.copied.record(torch.cuda.current_stream(self.packed.device))

    def read(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(boxes, scores, labels) on the host: the packed results as copied (waiting for this image's copy
        only), or the exact path where needed."""
        if self.copied is not None:
            self.copied.synchronize()
        boxes, scores, labels, n, exact = unpack(self.host)
        if not exact:
            b, s, lab = filter_and_nms(self.all_boxes, self.all_scores, **self.settings)
            return b.cpu(), s.cpu(), lab.cpu()
        return boxes[:n].clone(), scores[:n].clone(), labels[:n].long()


FIELDS = 3  # tensors per image: packed (see pack), all boxes, all scores (for the exact path)


def pack(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, count: torch.Tensor,
         exact: torch.Tensor) -> torch.Tensor:
    """The kept rows and their count and exactness flag in one float32 vector, made inside the graph, so that
    reading an image's results is one copy (labels and counts are exact in float32 up to 2**24)."""
    return torch.cat([boxes.reshape(-1), scores, labels.to(scores.dtype), count.to(scores.dtype)[None],
                      exact.to(scores.dtype)[None]])


def unpack(packed: torch.Tensor) -> tuple:
    """pack's vector -> (boxes, scores, labels as float, count, exact) on the same device."""
    rows = (packed.numel() - 2) // 6
    return (packed[:4 * rows].view(rows, 4), packed[4 * rows:5 * rows], packed[5 * rows:6 * rows],
            int(packed[-2]), bool(packed[-1]))


ROW_BLOCK = 1024  # rows of the suppression matrix computed at once: only the upper triangle is, in row blocks


def pairwise_suppression(rows: torch.Tensor, cols: torch.Tensor, iou: float) -> torch.Tensor:
    """(R, C) bool: IoU(rows[i], cols[j]) > iou, computed as torchvision's nms kernels do (float32, no +1)."""
    ax1, ay1, ax2, ay2 = rows.unbind(1)
    bx1, by1, bx2, by2 = cols.unbind(1)
    area_a, area_b = (ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1)
    w = (torch.minimum(ax2[:, None], bx2[None]) - torch.maximum(ax1[:, None], bx1[None])).clamp(min=0)
    h = (torch.minimum(ay2[:, None], by2[None]) - torch.maximum(ay1[:, None], by1[None])).clamp(min=0)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None] - inter) > iou


def suppression_matrix(boxes: torch.Tensor, iou: float, row_block: int = ROW_BLOCK) -> torch.Tensor:
    """(N, N) float16, 1 where box i comes before box j and suppresses it. Only pairs i < j matter, so the IoU is
    computed for the upper triangle alone, a block of rows against the columns from its first row on: about 40%
    fewer elements than the full matrix at 4096 candidates (memory traffic is what this costs on a GPU)."""
    n = boxes.shape[0]
    out = boxes.new_zeros((n, n), dtype=torch.float16)
    for start in range(0, n, row_block):
        block = pairwise_suppression(boxes[start:start + row_block], boxes[start:], iou)
        out[start:start + row_block, start:] = block.triu(1)  # the block's diagonal is the matrix's
    return out


def greedy_keep(blocks: torch.Tensor, valid: torch.Tensor, rounds: int = ROUNDS):
    """Greedy NMS over boxes in processing order: (keep mask, converged flag), both on the device. `blocks`:
    suppression_matrix's.

    Box j is kept iff it is valid and no kept box before it suppresses it. keep[j] depends only on earlier boxes,
    so iterating from keep = valid fixes the first chain link each round; two equal rounds mean the fixed point.

    "Some kept earlier box suppresses j" is a count: (keep as 0/1) @ blocks, a matrix-vector product that reads
    the N x N matrix once a round (an AND then an any() read it three times). In float16 a sum of 0s and 1s is
    zero only when every term is, whatever the accumulation order or rounding (a partial sum never shrinks; an
    overflow is inf, not zero): the test count == 0 is exact. Invalid boxes need no mask: never kept, they never
    count. keep stays 0/1 in float16 between rounds (valid * test), one kernel fewer a round than a bool."""
    valid = valid.to(blocks.dtype)
    keep = valid
    for _ in range(rounds):
        keep = valid * (keep @ blocks == 0)
    after = valid * (keep @ blocks == 0)
    return keep.bool(), (after == keep).all()


def fixed_filter_and_nms(boxes: torch.Tensor, scores: torch.Tensor, *, score_thr=0.05, nms_iou=0.5,
                         max_per_img=100, capacity: int = CAPACITY, rounds: int = ROUNDS) -> tuple:
    """filter_and_nms's result from (M, 4) boxes and (M, K) scores, with fixed sizes and no host sync: the
    FIELDS tensors that Pending takes. Capacity 0: no fixed-size NMS, read() runs the exact path."""
    if capacity == 0:  # count 0, not exact
        return scores.new_zeros(2), boxes, scores
    m, k = scores.shape
    flat = scores.reshape(-1)
    n = min(capacity, flat.numel())
    best = flat.topk(n)
    overflow = (best.values[-1] > score_thr) & (flat.numel() > n)  # more pairs pass than fit: the cut is inexact
    pick = best.indices.sort().values  # anchor-major order, as nonzero() lists the pairs
    cand_scores = flat[pick]
    cand_labels = pick % k
    cand_boxes = boxes[pick // k]
    sized = (cand_boxes[:, 2] > cand_boxes[:, 0]) & (cand_boxes[:, 3] > cand_boxes[:, 1])
    valid = (cand_scores > score_thr) & sized
    order = torch.sort(torch.where(valid, cand_scores, -1.0), descending=True, stable=True).indices
    cand_scores, cand_labels, cand_boxes, valid = (t[order] for t in (cand_scores, cand_labels, cand_boxes, valid))
    # the reference's offset: (max coordinate of the valid boxes + 1) per class index
    top_coord = torch.where(valid[:, None], cand_boxes, float("-inf")).max()  # a Python scalar: no copy to the GPU
    offsets = cand_labels.to(cand_boxes) * (top_coord + 1)
    keep, converged = greedy_keep(suppression_matrix(cand_boxes + offsets[:, None], nms_iou), valid, rounds)
    # positions of the kept boxes first, in order (a stable sort of 0 = kept, 1 = not), then fixed-size
    kept = torch.sort((~keep).to(torch.uint8), stable=True).indices[:max_per_img if max_per_img > 0 else n]
    count = keep.sum().clamp(max=kept.numel())
    return pack(cand_boxes[kept], cand_scores[kept], cand_labels[kept], count, converged & ~overflow), boxes, scores


class TensorGeometry:
    """An image's geometry as candidates() reads it, from a (4,) float32 tensor on the device: resized height and
    width, width and height scale factors. A captured graph then serves every image of one padded size; the
    values equal the ImageMeta's (sizes are exact in float32, and a scale factor is rounded to float32 either
    way before it divides)."""

    def __init__(self, row: torch.Tensor):
        self.img_shape = (row[0], row[1])
        self.scale_factor = (row[2], row[3])


def geometry_rows(metas) -> torch.Tensor:
    """(B, 4) float32 on the host: each ImageMeta's resized (h, w) and (w, h) scale factors, for TensorGeometry."""
    return torch.tensor([[*m.img_shape, *m.scale_factor] for m in metas], dtype=torch.float32)


def detect_single_fixed(cls_scores, bbox_preds, anchors, geometry: torch.Tensor, *, nms_pre=1000, score_thr=0.05,
                        nms_iou=0.5, max_per_img=100, num_classes=None, capacity: int = CAPACITY) -> tuple:
    """postprocess.detect_single without host synchronisation (see the module docstring), for one image whose
    geometry is a row of geometry_rows(): the FIELDS tensors that Pending takes."""
    boxes, scores = candidates(cls_scores, bbox_preds, anchors, TensorGeometry(geometry), nms_pre=nms_pre,
                               num_classes=num_classes)
    return fixed_filter_and_nms(boxes, scores, score_thr=score_thr, nms_iou=nms_iou, max_per_img=max_per_img,
                                capacity=capacity)
