"""What kind of errors a model makes, and how much AP50 fixing each kind would add (the approach of TIDE, Bolya et
al., ECCV 2020, implemented here on COCOeval's matching and re-scored by COCOeval itself).

Every false positive at IoU 0.5 (COCOeval's matching) is put in the first of these that fits, IoU taken with
non-crowd boxes of its image:
  localisation    a box of its class overlaps it with 0.1 <= IoU < 0.5
  classification  a box of another class overlaps it with IoU >= 0.5
  duplicate       a box of its class overlaps it with IoU >= 0.5 but a higher-scoring detection took that box
  background      nothing overlaps it with IoU > 0.1
  both            the rest: wrong class and poorly placed (0.1 < IoU < 0.5 with boxes of other classes only)
A box no detection took is missed when no localisation or classification error points at it.

Fixing one kind, the others untouched, then scoring again: a localisation error takes its box's coordinates, a
classification error its box's class and coordinates (each box fixed once, by its highest-scoring error; the
others, and errors whose box a true positive already holds, are removed); duplicate, background and both errors
are removed; missed boxes leave the ground truth. The gain is the re-scored AP50 minus the original.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from retinanet.evaluation.matching import UNMATCHED, ImageBoxes, greedy_match
from retinanet.evaluation.scorer import score_coco

CLASSIFICATION, LOCALISATION, BOTH = "classification", "localisation", "both"
DUPLICATE, BACKGROUND, MISSED = "duplicate", "background", "missed"
ERROR_TYPES = (CLASSIFICATION, LOCALISATION, BOTH, DUPLICATE, BACKGROUND, MISSED)
FOREGROUND_IOU, BACKGROUND_IOU = 0.5, 0.1


@dataclass(frozen=True)
class DetectionError:
    kind: str
    detection: int | None  # position in the results list (None for missed)
    box: int | None  # position in the ground truth's annotation list (None where no box is involved)
    box_taken: bool  # a true positive already holds `box`
    score: float


@dataclass(frozen=True)
class ErrorBreakdown:
    ap50: float  # the detections' AP50, as re-scored here
    counts: dict[str, int]
    gains: dict[str, float | None]  # AP50 added by fixing only errors of that kind
    foreground_iou: float = FOREGROUND_IOU
    background_iou: float = BACKGROUND_IOU

    def to_dict(self) -> dict:
        return {"ap50": self.ap50, "foreground_iou": self.foreground_iou, "background_iou": self.background_iou,
                "errors": [{"type": t, "count": self.counts[t], "ap50_gain": self.gains[t]} for t in ERROR_TYPES]}


def _image_errors(img: ImageBoxes, fg: float, bg: float) -> list[DetectionError]:
    dt_gt, gt_dt = greedy_match(img, fg)
    iou = np.where(img.gt_crowd[None, :], 0.0, img.iou)  # crowd regions never explain an error
    taken = gt_dt >= 0
    found, pointed_at = [], set()
    for d in np.flatnonzero(dt_gt == UNMATCHED):
        same = img.gt_cats == img.dt_cats[d]

        def best(mask):
            values = np.where(mask, iou[d], -1.0)
            g = int(np.argmax(values)) if len(values) else -1
            return g, (values[g] if g >= 0 else -1.0)

        g, v = best(same)
        kind = None
        if bg <= v < fg:
            kind = LOCALISATION
        else:
            g, v = best(~same)
            if v >= fg:
                kind = CLASSIFICATION
            else:
                g, v = best(same & taken)
                if v >= fg:
                    kind = DUPLICATE
                elif best(np.ones_like(same))[1] <= bg:
                    kind, g = BACKGROUND, -1
                else:
                    kind, g = BOTH, -1
        if kind in (LOCALISATION, CLASSIFICATION) and not taken[g]:
            pointed_at.add(g)
        found.append(DetectionError(kind, int(img.dt_index[d]), int(img.gt_index[g]) if g >= 0 else None,
                                    bool(g >= 0 and taken[g]), float(img.dt_scores[d])))
    for g in np.flatnonzero(~taken & ~img.gt_crowd):
        if g not in pointed_at:
            found.append(DetectionError(MISSED, None, int(img.gt_index[g]), False, 0.0))
    return found


def find_errors(images: list[ImageBoxes], fg: float = FOREGROUND_IOU, bg: float = BACKGROUND_IOU
                ) -> list[DetectionError]:
    return [e for img in images for e in _image_errors(img, fg, bg)]


def fixed(kind: str, errors: list[DetectionError], gt_dataset: dict, results: list[dict]) -> tuple[dict, list]:
    """(ground truth, detections) with every error of `kind` fixed, the rest as they were."""
    mine = [e for e in errors if e.kind == kind]
    if kind == MISSED:
        gone = {e.box for e in mine}
        anns = [a for i, a in enumerate(gt_dataset["annotations"]) if i not in gone]
        return {**gt_dataset, "annotations": anns}, results
    drop, change = set(), {}
    if kind in (LOCALISATION, CLASSIFICATION):
        fixed_boxes = set()
        for e in sorted(mine, key=lambda e: -e.score):  # the best error of each box is fixed
            if e.box_taken or e.box in fixed_boxes:
                drop.add(e.detection)
            else:
                fixed_boxes.add(e.box)
                box = gt_dataset["annotations"][e.box]
                change[e.detection] = {"bbox": [float(v) for v in box["bbox"]], "category_id": box["category_id"]}
    else:
        drop = {e.detection for e in mine}
    out = [{**r, **change[i]} if i in change else r for i, r in enumerate(results) if i not in drop]
    return gt_dataset, out


def error_breakdown(images: list[ImageBoxes], gt_dataset: dict, results: list[dict], image_ids, cat_ids,
                    backend: str = "auto") -> ErrorBreakdown:
    """Counts of each error type and the AP50 each would add, re-scored by COCOeval at IoU 0.5."""
    errors = find_errors(images)

    def ap50(gt, dets):
        return score_coco(gt, dets, image_ids, cat_ids, iou_thrs=(FOREGROUND_IOU,), backend=backend
                          ).ap(FOREGROUND_IOU)

    base = ap50(gt_dataset, results)
    counts = Counter(e.kind for e in errors)
    gains: dict[str, float | None] = {}
    for kind in ERROR_TYPES:
        after = ap50(*fixed(kind, errors, gt_dataset, results)) if counts[kind] else base
        # None: AP50 is undefined before or after (no ground truth at all, or every box missed and removed)
        gains[kind] = after - base if min(after, base) >= 0 else None
    return ErrorBreakdown(base, {t: counts[t] for t in ERROR_TYPES}, gains)
