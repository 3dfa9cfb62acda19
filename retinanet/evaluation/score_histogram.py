"""How the scores of true and false positives are spread: where a score threshold would cut."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retinanet.evaluation.matching import UNMATCHED, ImageBoxes, greedy_match


@dataclass(frozen=True)
class ScoreHistogram:
    edges: tuple[float, ...]  # bins + 1 edges over [0, 1]; the last bin includes 1
    true_positives: tuple[int, ...]
    false_positives: tuple[int, ...]
    iou_thr: float

    def to_dict(self) -> dict:
        return {"iou_threshold": self.iou_thr, "edges": list(self.edges), "true_positives":
                list(self.true_positives), "false_positives": list(self.false_positives)}


def score_histogram(images: list[ImageBoxes], iou_thr: float = 0.5, bins: int = 20) -> ScoreHistogram:
    """Scores of COCOeval's true and false positives at `iou_thr` (detections on crowd regions in neither);
    scores outside [0, 1] are counted in the end bins."""
    tp, fp = [], []
    for img in images:
        dt_gt, _ = greedy_match(img, iou_thr)
        tp.append(img.dt_scores[dt_gt >= 0])
        fp.append(img.dt_scores[dt_gt == UNMATCHED])
    edges = np.asarray([i / bins for i in range(bins + 1)])  # 0.95 is 19/20 exactly, not linspace's 0.95000..1

    def counts(scores):
        values = np.clip(np.concatenate(scores) if scores else np.zeros(0), 0.0, 1.0)
        return tuple(int(n) for n in np.histogram(values, bins=edges)[0])

    return ScoreHistogram(tuple(float(e) for e in edges), counts(tp), counts(fp), iou_thr)
