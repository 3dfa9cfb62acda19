"""Detections matched to ground truth one image at a time, by COCOeval's own rule, for the analyses that need to
know what each detection hit (confusion matrix, true/false-positive scores, error breakdown).

COCOeval's rule, reproduced: per image and category, detections by descending score (stable, so ties keep the
results' order) each take the unmatched non-crowd box of highest IoU >= the threshold (the last of equal ones);
a detection with no such box but IoU >= the threshold with a crowd region is ignored, neither true nor false.
Only each image's 100 best detections per category count, as with COCOeval's maxDets=100. IoU is COCO's: no +1,
and a crowd region's is intersection over the detection's area.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

UNMATCHED, IGNORED = -1, -2  # a detection's match when it hit no box, or only a crowd region
MAX_DETS = 100


def coco_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of [x, y, w, h] boxes as pycocotools computes it (crowd columns: over the detection's area)."""
    if not len(dets) or not len(gts):
        return np.zeros((len(dets), len(gts)))
    d, g = dets[:, None, :], gts[None, :, :]
    w = np.minimum(d[..., 0] + d[..., 2], g[..., 0] + g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    h = np.minimum(d[..., 1] + d[..., 3], g[..., 1] + g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    d_area, g_area = d[..., 2] * d[..., 3], g[..., 2] * g[..., 3]
    union = np.where(crowd[None, :], d_area, d_area + g_area - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class ImageBoxes:
    """One image's ground truth and detections; detections by descending score, at most 100 per category."""

    image_id: int
    gt_boxes: np.ndarray  # (G, 4) x, y, w, h
    gt_cats: np.ndarray  # (G,) category ids
    gt_crowd: np.ndarray  # (G,) bool
    gt_index: np.ndarray  # (G,) position in the ground-truth dict's annotation list
    dt_boxes: np.ndarray  # (D, 4)
    dt_cats: np.ndarray
    dt_scores: np.ndarray
    dt_index: np.ndarray  # (D,) position in the results list
    iou: np.ndarray  # (D, G) coco_iou

    def gt_is(self, cat_id) -> np.ndarray:
        return self.gt_cats == cat_id


def _boxes(items, key="bbox") -> np.ndarray:
    return np.asarray([it[key] for it in items], dtype=np.float64).reshape(-1, 4)


def group_by_image(gt_dataset: dict, results: list[dict], image_ids, cat_ids) -> list[ImageBoxes]:
    """Every image of `image_ids` (in id order) with its boxes of `cat_ids`; other images' detections are left
    out, as COCOeval leaves them."""
    wanted, cats = set(image_ids), set(cat_ids)
    gts, dts = defaultdict(list), defaultdict(list)
    for i, a in enumerate(gt_dataset.get("annotations", [])):
        if a["image_id"] in wanted and a["category_id"] in cats:
            gts[a["image_id"]].append(i)
    for i, r in enumerate(results):
        if r["image_id"] in wanted and r["category_id"] in cats:
            dts[r["image_id"]].append(i)
    anns = gt_dataset.get("annotations", [])
    images = []
    for image_id in sorted(wanted):
        g = gts.get(image_id, [])
        d = dts.get(image_id, [])
        scores = np.asarray([results[i]["score"] for i in d], dtype=np.float64)
        d = [d[j] for j in np.argsort(-scores, kind="mergesort")]  # stable: ties keep the results' order
        seen = defaultdict(int)
        kept = []
        for i in d:  # COCOeval's maxDets: the best 100 of each category
            c = results[i]["category_id"]
            if seen[c] < MAX_DETS:
                seen[c] += 1
                kept.append(i)
        gt_boxes, crowd = _boxes([anns[i] for i in g]), np.asarray([bool(anns[i].get("iscrowd", 0)) for i in g])
        dt_boxes = _boxes([results[i] for i in kept])
        images.append(ImageBoxes(
            image_id=image_id, gt_boxes=gt_boxes, gt_cats=np.asarray([anns[i]["category_id"] for i in g], int),
            gt_crowd=crowd.astype(bool).reshape(-1), gt_index=np.asarray(g, int), dt_boxes=dt_boxes,
            dt_cats=np.asarray([results[i]["category_id"] for i in kept], int),
            dt_scores=np.asarray([results[i]["score"] for i in kept], np.float64), dt_index=np.asarray(kept, int),
            iou=coco_iou(dt_boxes, gt_boxes, crowd.astype(bool).reshape(-1))))
    return images


def greedy_match(img: ImageBoxes, iou_thr: float, use: np.ndarray | None = None, class_aware: bool = True,
                 available: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(match of each detection: a ground-truth position, UNMATCHED or IGNORED; matching detection of each
    ground-truth box or -1). `use` masks the detections that take part (the others stay UNMATCHED), `available`
    the boxes they may take; class_aware=False lets a detection take a box of any category."""
    n_dt, n_gt = img.iou.shape
    dt_gt = np.full(n_dt, UNMATCHED)
    gt_dt = np.full(n_gt, -1)
    free_mask = ~img.gt_crowd if available is None else ~img.gt_crowd & available
    thr = min(iou_thr, 1 - 1e-10)  # COCOeval's start value
    for d in range(n_dt):
        if use is not None and not use[d]:
            continue
        ok = img.iou[d] >= thr
        if class_aware:
            ok &= img.gt_cats == img.dt_cats[d]
        free = np.flatnonzero(ok & free_mask)
        if len(free):
            values = img.iou[d, free]
            g = free[len(free) - 1 - int(np.argmax(values[::-1]))]  # the last of equal IoUs, as COCOeval
            dt_gt[d], gt_dt[g] = g, d
            free_mask[g] = False
        elif (ok & img.gt_crowd).any():
            dt_gt[d] = IGNORED
    return dt_gt, gt_dt
