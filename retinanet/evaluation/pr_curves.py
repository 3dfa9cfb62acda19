"""Precision-recall curves as COCOeval interpolates them: precision at its 101 recall points, per class and
averaged over classes (the curve whose area is the AP at that IoU)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retinanet.evaluation.scorer import CocoScores

CURVE_IOUS = (0.5, 0.75)


@dataclass(frozen=True)
class PRCurve:
    label: str  # "all classes" or a class name
    iou: float
    recall: tuple[float, ...]
    precision: tuple[float, ...]  # COCOeval's interpolated precision; 0 past the highest recall reached

    @property
    def ap(self) -> float:
        return float(np.mean(self.precision))


def _curve(label: str, iou: float, rec_thrs: np.ndarray, precision: np.ndarray) -> PRCurve:
    return PRCurve(label, iou, tuple(float(r) for r in rec_thrs), tuple(float(p) for p in precision))


def overall_curve(scores: CocoScores, iou: float) -> PRCurve | None:
    """The mean over classes with ground truth at each recall point (None when no class has any)."""
    p = scores.precision[scores.iou_index(iou), :, :, 0, -1]  # (R, K)
    valid = (p > -1).all(axis=0)
    if not valid.any():
        return None
    return _curve("all classes", iou, scores.rec_thrs, p[:, valid].mean(axis=1))


def class_curves(scores: CocoScores, iou: float, names: dict[int, str]) -> list[PRCurve]:
    """One curve per class with ground truth, in category-id order."""
    p = scores.precision[scores.iou_index(iou), :, :, 0, -1]
    return [_curve(names.get(c, str(c)), iou, scores.rec_thrs, p[:, k])
            for k, c in enumerate(scores.cat_ids) if (p[:, k] > -1).all()]
