"""Per-class AP, AP50, AP75 and AR100 read from COCOeval's own arrays, so that they average to its overall figures.

COCOeval's AP is the mean of precision[T, R, K, area=all, maxDets=100] over every category with ground truth; a
category's AP here is the same mean restricted to its slice. Categories without ground truth are -1 throughout in
COCOeval and None here; they count in neither.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from retinanet.evaluation.scorer import CocoScores

CSV_COLUMNS = ("category_id", "name", "ap", "ap50", "ap75", "ar100", "gt")


@dataclass(frozen=True)
class ClassFigures:
    """One category's figures as fractions (None: no ground truth of it in the scored images)."""

    category_id: int
    name: str
    ap: float | None
    ap50: float | None
    ap75: float | None
    ar100: float | None
    gt: int  # ground-truth instances, crowd regions left out (COCOeval ignores them)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: np.ndarray) -> float | None:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def gt_counts(gt_dataset: dict, image_ids, cat_ids) -> dict[int, int]:
    """Non-crowd ground-truth instances per category over `image_ids` (every category of `cat_ids` present)."""
    wanted = set(image_ids)
    counted = Counter(a["category_id"] for a in gt_dataset.get("annotations", [])
                      if a["image_id"] in wanted and not a.get("iscrowd", 0))
    return {c: counted.get(c, 0) for c in cat_ids}


def per_class(scores: CocoScores, names: dict[int, str], counts: dict[int, int]) -> list[ClassFigures]:
    """Figures of every scored category, in category-id order; sort with `by_ap`."""
    t50, t75 = scores.iou_index(0.5), scores.iou_index(0.75)
    rows = []
    for k, cat_id in enumerate(scores.cat_ids):
        p = scores.precision[:, :, k, 0, -1]  # area "all", the most detections (100)
        rows.append(ClassFigures(category_id=int(cat_id), name=names.get(cat_id, str(cat_id)), ap=_mean(p),
                                 ap50=_mean(p[t50]), ap75=_mean(p[t75]),
                                 ar100=_mean(scores.recall[:, k, 0, -1]), gt=counts.get(cat_id, 0)))
    return rows


def by_ap(rows: list[ClassFigures]) -> list[ClassFigures]:
    """Best first; categories without ground truth last, by name."""
    return sorted(rows, key=lambda r: (r.ap is None, -(r.ap or 0.0), r.name))


def class_mean(rows: list[ClassFigures], field: str = "ap") -> float:
    """The mean of a figure over the categories that have it: COCOeval's overall figure (-1 when none does)."""
    values = [getattr(r, field) for r in rows if getattr(r, field) is not None]
    return float(np.mean(values)) if values else -1.0


def csv_text(rows: list[ClassFigures]) -> str:
    """The rows as CSV (figures as fractions, empty where a category has no ground truth)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(["" if v is None else v for v in (getattr(r, c) for c in CSV_COLUMNS)])
    return buf.getvalue()
