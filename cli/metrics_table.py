"""COCOeval's twelve figures as one table, for `rdet eval` (beside the published box AP) and `rdet train`."""
from __future__ import annotations

from typing import Optional

from rich.table import Table


def metrics_table(title: str, metrics: dict, *, published_ap: Optional[float] = None,
                  compare: bool = False) -> Table:
    """Figures in percent (COCOeval's fractions x 100), n/a where COCOeval says -1 (no ground truth of that size).
    With `compare`, the published box AP (percent) and the difference stand beside bbox_mAP."""
    from retinanet.evaluation.scorer import METRICS

    table = Table(title=title, title_justify="left")
    columns = ["metric", "", "IoU", "area", "max dets", "measured"] + (["published", "diff"] if compare else [])
    for col in columns:
        table.add_column(col, justify="left" if col in ("metric", "", "IoU", "area") else "right")
    for key, what, iou, area, max_dets in METRICS:
        value = metrics[key]
        cells = [key, what, iou, area, str(max_dets), "n/a" if value < 0 else f"{value * 100:.1f}"]
        if compare:
            pub = diff = ""
            if key == "bbox_mAP" and published_ap is not None:
                pub = f"{published_ap:.1f}"
                diff = f"{round(value * 100, 1) - published_ap:+.1f}" if value >= 0 else ""
            cells += [pub, diff]
        table.add_row(*cells)
    return table
