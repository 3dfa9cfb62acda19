"""`rdet eval NAME --weights 'run/epoch_*.pth'`: every checkpoint of a training run scored on one set, the images
decoded once where memory allows, one table best first and a plot of AP against epoch."""
from __future__ import annotations

import re
from pathlib import Path

from rich.table import Table

from .common import Fail, out, print_json
from .text import shown


def _epoch(meta: dict, path: Path) -> int | None:
    """The checkpoint's epoch: its meta's (rdet train and MMDetection write one), else the file name's number."""
    epoch = meta.get("epoch") if isinstance(meta, dict) else None
    if isinstance(epoch, int) and not isinstance(epoch, bool):
        return epoch
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def run_checkpoints(entry, coco_set, checkpoints: list[Path], source, run, out_file, plots, as_json) -> None:
    """`source`: a WeightsSource (its weights replaced by each checkpoint), `run`: eval_cmd's _EvalRun."""
    from dataclasses import replace

    from retinanet.evaluation.coco_eval import DecodedImages, score_set
    from retinanet.evaluation.plots import ap_by_epoch_chart
    from zoo.checksum import sha256_file

    from .eval_cmd import _detect, _provenance

    if out_file is not None:
        raise Fail("--out saves one model's detections: give --weights a single file to use it")
    decoded = DecodedImages()  # one model configuration: every checkpoint sees the same pre-processed images
    rows, last = [], None
    for path in checkpoints:
        done = _detect(entry, coco_set, replace(source, weights=path, random_weights=False), run, decoded=decoded)
        if done is None:
            continue  # another torchrun rank: rank 0 reports
        scored = score_set(coco_set, done.results)
        rows.append({"weights": str(path), "weights_sha256": sha256_file(path),
                     "epoch": _epoch(done.detector.meta, path), "metrics": scored.stats})
        last = (done, scored)
    if last is None:
        return
    rows.sort(key=lambda r: -r["metrics"]["bbox_mAP"])
    points = [(r["epoch"], 100 * r["metrics"]["bbox_mAP"]) for r in rows if r["epoch"] is not None]
    chart = None
    if points:
        chart = Path(plots or checkpoints[0].parent) / "ap_by_epoch.png"
        ap_by_epoch_chart(points, chart, f"{entry.name}: box AP by epoch on {len(coco_set)} images")
    if as_json:
        provenance = _provenance(entry, coco_set, last[0], last[1])
        provenance.update(weights=None, weights_sha256=None)  # each checkpoint carries its own
        print_json({"model": entry.name, "images": len(coco_set), "checkpoints": rows,
                    "plot": None if chart is None else str(chart), "provenance": provenance})
        return
    table = Table(title=f"{entry.name}: {len(rows)} checkpoints on {len(coco_set)} images of "
                        f"{shown(coco_set.ann_file.name)}, best first", title_justify="left")
    for col in ("checkpoint", "epoch", "AP", "AP50", "AP75", "AR100"):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    for r in rows:
        m = r["metrics"]
        table.add_row(shown(Path(r["weights"]).name), "-" if r["epoch"] is None else str(r["epoch"]),
                      *(f"{100 * m[k]:.1f}" if m[k] >= 0 else "n/a" for k in ("bbox_mAP", "bbox_mAP_50",
                                                                              "bbox_mAP_75", "AR_100")))
    out.print(table)
    if chart is not None:
        out.print(f"AP by epoch plotted in {shown(chart)}", highlight=False)
