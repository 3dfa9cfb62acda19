"""A confusion matrix of detections against ground truth: the classes plus background, at a stated IoU and score.

Rows are the true class, columns the predicted one; the last row and column are background. Detections scoring
at least `score_thr` are matched per image in two passes, by descending score: first as COCOeval matches (same
class, best free box of IoU >= `iou_thr`), so the diagonal is the true positives; then what is left takes the
best free box of any class (a confusion). A detection still unmatched is background (last row); a box no
detection took is missed (last column). Detections on crowd regions count nowhere, and crowd regions are never
missed, as in COCOeval.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retinanet.evaluation.matching import IGNORED, UNMATCHED, ImageBoxes, greedy_match

BACKGROUND = "background"
DEFAULT_IOU, DEFAULT_SCORE = 0.5, 0.3


@dataclass(frozen=True)
class ConfusionMatrix:
    counts: np.ndarray  # (K + 1, K + 1) int: [true class, predicted class], index K = background
    cat_ids: tuple[int, ...]
    names: tuple[str, ...]  # the K class names, then BACKGROUND
    iou_thr: float
    score_thr: float

    def to_dict(self) -> dict:
        return {"iou_threshold": self.iou_thr, "score_threshold": self.score_thr, "labels": list(self.names),
                "rows": "ground truth", "columns": "prediction", "counts": self.counts.tolist()}


def confusion_matrix(images: list[ImageBoxes], cat_ids, names: dict[int, str], iou_thr: float = DEFAULT_IOU,
                     score_thr: float = DEFAULT_SCORE) -> ConfusionMatrix:
    cat_ids = tuple(cat_ids)
    k = len(cat_ids)
    position = {c: i for i, c in enumerate(cat_ids)}
    counts = np.zeros((k + 1, k + 1), dtype=np.int64)
    for img in images:
        confident = img.dt_scores >= score_thr
        same, gt_dt = greedy_match(img, iou_thr, use=confident)
        left = confident & (same == UNMATCHED)
        other, gt_dt2 = greedy_match(img, iou_thr, use=left, class_aware=False, available=gt_dt < 0)
        for d in np.flatnonzero(confident):
            g = same[d] if same[d] >= 0 else other[d]
            if same[d] == IGNORED or other[d] == IGNORED:
                continue
            row = position[img.gt_cats[g]] if g >= 0 else k
            counts[row, position[img.dt_cats[d]]] += 1
        missed = (gt_dt < 0) & (gt_dt2 < 0) & ~img.gt_crowd
        for g in np.flatnonzero(missed):
            counts[position[img.gt_cats[g]], k] += 1
    return ConfusionMatrix(counts, cat_ids, tuple(names.get(c, str(c)) for c in cat_ids) + (BACKGROUND,),
                           iou_thr, score_thr)
