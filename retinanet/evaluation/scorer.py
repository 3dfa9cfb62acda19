"""COCOeval's bbox scoring, by faster-coco-eval when it is installed (the same figures, 10-16x faster on COCO val)
and by pycocotools otherwise, returning both the 12 summary figures and the arrays they are averaged from.

    scores = score_coco(coco_set.coco.dataset, results, image_ids, coco_set.cat_ids)
    scores.stats["bbox_mAP"]            # COCOeval.stats[0]
    scores.precision[t, r, k, a, m]     # IoU threshold t, recall point r, category k, area a, max-dets m

Everything that reads per-class figures, PR curves or re-scores fixed detections goes through here, so one scorer
answers every question about a set of detections.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from dataclasses import dataclass
from importlib.util import find_spec

import numpy as np

from retinanet.coco_api import pycocotools_classes
from retinanet.errors import ArgumentError

# COCOeval.stats in order: (name, what, IoU, area, max detections)
METRICS = (
    ("bbox_mAP", "AP", "0.50:0.95", "all", 100),
    ("bbox_mAP_50", "AP", "0.50", "all", 100),
    ("bbox_mAP_75", "AP", "0.75", "all", 100),
    ("bbox_mAP_s", "AP", "0.50:0.95", "small", 100),
    ("bbox_mAP_m", "AP", "0.50:0.95", "medium", 100),
    ("bbox_mAP_l", "AP", "0.50:0.95", "large", 100),
    ("AR_1", "AR", "0.50:0.95", "all", 1),
    ("AR_10", "AR", "0.50:0.95", "all", 10),
    ("AR_100", "AR", "0.50:0.95", "all", 100),
    ("AR_s", "AR", "0.50:0.95", "small", 100),
    ("AR_m", "AR", "0.50:0.95", "medium", 100),
    ("AR_l", "AR", "0.50:0.95", "large", 100),
)
METRIC_NAMES = tuple(m[0] for m in METRICS)

FASTER, PYCOCOTOOLS = "faster-coco-eval", "pycocotools"
BACKENDS = (FASTER, PYCOCOTOOLS)


@dataclass(frozen=True)
class CocoScores:
    """One COCOeval run: the 12 figures (None when the IoU thresholds are not COCO's ten) and its arrays.

    precision: [T, R, K, A, M], -1 where a category has no ground truth; recall: [T, K, A, M]. Axes follow
    iou_thrs, rec_thrs (the 101 recall points), cat_ids, area_labels (all, small, medium, large) and max_dets."""

    stats: dict[str, float] | None
    precision: np.ndarray
    recall: np.ndarray
    iou_thrs: np.ndarray
    rec_thrs: np.ndarray
    cat_ids: tuple[int, ...]
    area_labels: tuple[str, ...]
    max_dets: tuple[int, ...]
    backend: str

    def iou_index(self, iou: float) -> int:
        """The position of an IoU threshold among iou_thrs (KeyError when it was not scored)."""
        hits = np.flatnonzero(np.isclose(self.iou_thrs, iou))
        if not len(hits):
            raise KeyError(f"IoU {iou} was not scored (thresholds: {self.iou_thrs.tolist()})")
        return int(hits[0])

    def ap(self, iou: float | None = None) -> float:
        """Mean precision over every scored category and recall point (all areas, most detections), as
        COCOeval's summary does: at one IoU threshold, or over all of them. -1 when there is no ground truth."""
        p = self.precision[:, :, :, 0, -1] if iou is None else self.precision[self.iou_index(iou), :, :, 0, -1]
        valid = p[p > -1]
        return float(np.mean(valid)) if valid.size else -1.0


def available_backends() -> tuple[str, ...]:
    """The scorers importable here, fastest first."""
    return tuple(b for b, module in ((FASTER, "faster_coco_eval"), (PYCOCOTOOLS, "pycocotools")) if find_spec(module))


def choose_backend(backend: str = "auto") -> str:
    if backend == "auto":
        return available_backends()[0]
    if backend not in BACKENDS:
        raise ArgumentError(f"scorer must be one of {('auto',) + BACKENDS}, not {backend!r}")
    return backend


def _api(backend: str):
    """(COCO class, COCOeval class) of a backend."""
    if backend == FASTER:
        from faster_coco_eval import COCO, COCOeval_faster

        logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)  # its per-step timing lines
        return COCO, COCOeval_faster
    return pycocotools_classes()


def _as_coco(coco_class, dataset: dict):
    coco = coco_class()
    coco.dataset = {"info": {}, **dataset}  # pycocotools 2.0.10's loadRes reads gt["info"], which COCO makes optional
    coco.createIndex()
    return coco


def _results_as_coco(coco_class, gt, results: list[dict]):
    """The detections as a COCO object. pycocotools' loadRes fails on an empty list (it reads results[0]), so no
    detections at all become an empty results set: AP 0 wherever there is ground truth."""
    if results:
        return gt.loadRes([dict(r) for r in results])  # copies: loadRes adds id, area and iscrowd in place
    return _as_coco(coco_class, {"images": list(gt.dataset["images"]), "annotations": [],
                                 "categories": copy.deepcopy(gt.dataset["categories"])})


def score_coco(gt_dataset: dict, results: list[dict], image_ids, cat_ids, *, iou_thrs=None,
               backend: str = "auto") -> CocoScores:
    """COCOeval (bbox) of COCO `results` against a COCO-format ground-truth dict, over `image_ids` and `cat_ids`.

    `iou_thrs` replaces COCO's ten thresholds (e.g. (0.5,) to re-score quickly at one) and keeps only the "all"
    area range; the 12 summary figures are then None. The ground-truth dict's annotations gain COCOeval's `ignore` flag (= iscrowd), as with
    pycocotools. Prints are silenced."""
    backend = choose_backend(backend)
    coco_class, eval_class = _api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = _as_coco(coco_class, gt_dataset)
        dt = _results_as_coco(coco_class, gt, results)
        ev = eval_class(gt, dt, "bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.params.catIds = sorted(cat_ids)
        if iou_thrs is not None:  # a quick re-score: these thresholds, and only the "all" area range
            ev.params.iouThrs = np.asarray(iou_thrs, dtype=np.float64)
            ev.params.areaRng, ev.params.areaRngLbl = ev.params.areaRng[:1], ev.params.areaRngLbl[:1]
        ev.evaluate()
        ev.accumulate()
        stats = None
        if iou_thrs is None:
            ev.summarize()
            stats = {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}
    p = ev.params
    return CocoScores(stats=stats, precision=np.asarray(ev.eval["precision"]), recall=np.asarray(ev.eval["recall"]),
                      iou_thrs=np.asarray(p.iouThrs), rec_thrs=np.asarray(p.recThrs), cat_ids=tuple(int(c) for c in p.catIds),
                      area_labels=tuple(p.areaRngLbl), max_dets=tuple(p.maxDets), backend=backend)
