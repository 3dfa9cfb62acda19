"""Everything that explains one set of detections beyond the 12 figures: per-class figures, precision-recall
curves, confusion matrix, score histogram and error breakdown, with the PNGs that show them.

    scores = score_set(coco_set, results)                  # coco_eval.score_set
    rows = class_figures(coco_set, scores)                 # --per-class
    found = analyse(coco_set, results, scores)             # --plots: also matches every detection
    write_plots(found, "plots/")
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from retinanet.data.coco import CocoSet
from retinanet.evaluation.confusion import DEFAULT_IOU, DEFAULT_SCORE, ConfusionMatrix, confusion_matrix
from retinanet.evaluation.error_breakdown import ErrorBreakdown, error_breakdown
from retinanet.evaluation.matching import group_by_image
from retinanet.evaluation.per_class import ClassFigures, gt_counts, per_class
from retinanet.evaluation.pr_curves import CURVE_IOUS, PRCurve, class_curves, overall_curve
from retinanet.evaluation.score_histogram import ScoreHistogram, score_histogram
from retinanet.evaluation.scorer import CocoScores

PLOT_FILES = ("pr_curves.png", "pr_curves_per_class.png", "confusion_matrix.png", "score_histogram.png",
              "error_breakdown.png")


def _names(coco_set: CocoSet) -> dict[int, str]:
    return dict(zip(coco_set.cat_ids, coco_set.class_names))


def class_figures(coco_set: CocoSet, scores: CocoScores, image_ids=None) -> list[ClassFigures]:
    ids = coco_set.image_ids if image_ids is None else image_ids
    return per_class(scores, _names(coco_set), gt_counts(coco_set.coco.dataset, ids, coco_set.cat_ids))


@dataclass(frozen=True)
class Analysis:
    per_class: list[ClassFigures]
    overall_curves: list[PRCurve]  # at CURVE_IOUS (absent where no class has ground truth)
    class_curves: dict[str, list[PRCurve]]  # class name -> its curves at CURVE_IOUS
    confusion: ConfusionMatrix
    histogram: ScoreHistogram
    errors: ErrorBreakdown

    def to_dict(self) -> dict:
        """The JSON form (per_class apart, as --per-class gives it; curves left out: they are drawn)."""
        return {"confusion_matrix": self.confusion.to_dict(),
                "score_histogram": self.histogram.to_dict(), "error_breakdown": self.errors.to_dict()}


def analyse(coco_set: CocoSet, results: list[dict], scores: CocoScores, image_ids=None,
            iou_thr: float = DEFAULT_IOU, score_thr: float = DEFAULT_SCORE, backend: str = "auto") -> Analysis:
    """`scores`: score_set's for the same results and images. `iou_thr`/`score_thr` are the confusion matrix's."""
    ids = coco_set.image_ids if image_ids is None else image_ids
    names = _names(coco_set)
    images = group_by_image(coco_set.coco.dataset, results, ids, coco_set.cat_ids)
    overall = [c for c in (overall_curve(scores, iou) for iou in CURVE_IOUS) if c is not None]
    by_class: dict[str, list[PRCurve]] = {}
    for iou in CURVE_IOUS:
        for curve in class_curves(scores, iou, names):
            by_class.setdefault(curve.label, []).append(curve)
    return Analysis(per_class=class_figures(coco_set, scores, ids), overall_curves=overall, class_curves=by_class,
                    confusion=confusion_matrix(images, coco_set.cat_ids, names, iou_thr, score_thr),
                    histogram=score_histogram(images),
                    errors=error_breakdown(images, coco_set.coco.dataset, results, ids, coco_set.cat_ids, backend))


def write_plots(found: Analysis, directory: str | Path, heading: str = "") -> list[Path]:
    """The PNGs of PLOT_FILES in `directory` (created); returns their paths."""
    from retinanet.evaluation import plots

    directory = Path(directory)
    prefix = f"{heading}: " if heading else ""
    return [
        plots.pr_chart(found.overall_curves, directory / PLOT_FILES[0], f"{prefix}precision-recall, all classes"),
        plots.pr_grid(list(found.class_curves.items()), directory / PLOT_FILES[1],
                      f"{prefix}precision-recall per class"),
        plots.confusion_chart(found.confusion, directory / PLOT_FILES[2]),
        plots.histogram_chart(found.histogram, directory / PLOT_FILES[3]),
        plots.errors_chart(found.errors, directory / PLOT_FILES[4]),
    ]
