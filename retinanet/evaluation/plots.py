"""The evaluation's PNGs: precision-recall curves (all classes, and one panel per class), the confusion matrix,
the true/false-positive score histogram, the error breakdown, and AP against epoch for a run's checkpoints."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from retinanet.charts import (INK, MUTED, PALETTE, Axes, blend, font, legend, nice_ticks, save_png, text_size,
                              title, vertical_text)
from retinanet.evaluation.confusion import ConfusionMatrix
from retinanet.evaluation.error_breakdown import ERROR_TYPES, ErrorBreakdown
from retinanet.evaluation.pr_curves import PRCurve
from retinanet.evaluation.score_histogram import ScoreHistogram

UNIT = (0.0, 1.0)
UNIT_TICKS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
IOU_COLOUR = {0.5: PALETTE[0], 0.75: PALETTE[1]}


def _iou_colour(iou: float) -> str:
    return IOU_COLOUR.get(round(iou, 2), PALETTE[2])


def pr_chart(curves: list[PRCurve], path: str | Path, heading: str) -> Path:
    """Precision against recall, one line per curve (e.g. all classes at IoU 0.5 and 0.75)."""
    img = Image.new("RGB", (900, 660), "white")
    axes = Axes(img, (90, 60, 860, 580), UNIT, UNIT)
    axes.frame(UNIT_TICKS, UNIT_TICKS, font(13))
    axes.axis_labels("recall", "precision", font(15))
    title(img, heading, font(18))
    for i, c in enumerate(curves):  # the first drawn widest, so that equal curves all show
        axes.line(c.recall, c.precision, _iou_colour(c.iou), width=max(2, 6 - 2 * i))
    legend(img, [(f"IoU {c.iou:g}: AP {100 * c.ap:.1f}", _iou_colour(c.iou)) for c in curves], (850, 70), font(14))
    return save_png(img, path)


def pr_grid(panels: list[tuple[str, list[PRCurve]]], path: str | Path, heading: str) -> Path:
    """One small precision-recall panel per class: (class name, its curves)."""
    cols = max(1, min(8, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    pw, ph = 230, 200
    img = Image.new("RGB", (cols * pw + 60, rows * ph + 110), "white")
    small, tiny = font(13), font(11)
    title(img, heading, font(18))
    for i, (name, curves) in enumerate(panels):
        left, top = 60 + (i % cols) * pw, 60 + (i // cols) * ph
        axes = Axes(img, (left + 28, top + 22, left + pw - 14, top + ph - 30), UNIT, UNIT)
        axes.frame([0.0, 0.5, 1.0], [0.0, 0.5, 1.0], tiny)
        for j, c in enumerate(curves):
            axes.line(c.recall, c.precision, _iou_colour(c.iou), width=max(1, 4 - 2 * j))
        aps = " / ".join(f"{100 * c.ap:.1f}" for c in curves)
        axes.draw.text((left + (pw + 14) / 2, top + 10), f"{name}  AP {aps}", fill=INK, font=small, anchor="mm")
    ious = sorted({c.iou for _, cs in panels for c in cs})
    draw = ImageDraw.Draw(img)
    draw.text((img.width / 2, img.height - 30), "recall (x) against precision (y); AP at "
              + " / ".join(f"IoU {v:g}" for v in ious), fill=INK, font=font(14), anchor="mm")
    legend(img, [(f"IoU {v:g}", _iou_colour(v)) for v in ious], (img.width - 10, 8), tiny)
    if not panels:
        draw.text((img.width / 2, 120), "no class has ground truth", fill=MUTED, font=small, anchor="mm")
    return save_png(img, path)


def confusion_chart(cm: ConfusionMatrix, path: str | Path) -> Path:
    """A heatmap: rows are the true class, columns the predicted one (background last); the colour is the cell's
    share of its row, the number its count."""
    n = len(cm.names)
    cell = max(10, min(56, 1000 // n))
    face = font(max(9, min(14, cell - 4)))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max(text_size(probe, name, face)[0] for name in cm.names) + 12
    left, top = max(label_w + 40, (640 - n * cell) // 2), 70  # at least 640 px wide: the title must fit
    size = (max(640, left + n * cell + 30), top + n * cell + label_w + 50)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    totals = cm.counts.sum(axis=1)
    for r in range(n):
        for c in range(n):
            count = int(cm.counts[r, c])
            share = count / totals[r] if totals[r] else 0.0
            box = [left + c * cell, top + r * cell, left + (c + 1) * cell, top + (r + 1) * cell]
            draw.rectangle(box, fill=blend((255, 255, 255), (8, 69, 148), share), outline="#cccccc")
            if cell >= 22 and count:
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), str(count),
                          fill="white" if share > 0.5 else INK, font=face, anchor="mm")
    for i, name in enumerate(cm.names):
        draw.text((left - 6, top + i * cell + cell / 2), name, fill=INK, font=face, anchor="rm")
        vertical_text(img, name, (left + i * cell + cell / 2, top + n * cell + 6 + text_size(draw, name, face)[0] / 2),
                      face)
    draw.rectangle([left, top, left + n * cell, top + n * cell], outline=INK)
    title(img, f"confusion matrix at IoU >= {cm.iou_thr:g}, score >= {cm.score_thr:g}", font(17), y=22)
    draw.text((left + n * cell / 2, 48), "colour: share of the row; number: detections (or missed boxes)",
              fill=MUTED, font=font(12), anchor="mm")
    draw.text((left + n * cell / 2, size[1] - 20), "predicted class", fill=INK, font=font(15), anchor="mm")
    vertical_text(img, "ground-truth class", (16, top + n * cell / 2), font(15))
    return save_png(img, path)


def histogram_chart(hist: ScoreHistogram, path: str | Path) -> Path:
    """True and false positives per score bin, side by side."""
    img = Image.new("RGB", (900, 620), "white")
    top = max(max(hist.true_positives, default=0), max(hist.false_positives, default=0), 5)  # whole-number ticks
    yt = nice_ticks(0, top)
    axes = Axes(img, (90, 60, 860, 540), UNIT, (0, yt[-1]))
    axes.frame(UNIT_TICKS, yt, font(13))
    axes.axis_labels("detection score", "detections", font(15))
    title(img, f"scores of true and false positives (IoU >= {hist.iou_thr:g})", font(18))
    edges = hist.edges
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        mid = (lo + hi) / 2
        axes.bar(lo + (hi - lo) * 0.08, mid, hist.true_positives[i], PALETTE[2])
        axes.bar(mid, hi - (hi - lo) * 0.08, hist.false_positives[i], PALETTE[1])
    legend(img, [(f"true positives ({sum(hist.true_positives)})", PALETTE[2]),
                 (f"false positives ({sum(hist.false_positives)})", PALETTE[1])], (850, 70), font(14))
    return save_png(img, path)


def errors_chart(breakdown: ErrorBreakdown, path: str | Path) -> Path:
    """The AP50 each error type would add if fixed, with the number of errors."""
    img = Image.new("RGB", (900, 520), "white")
    gains = [100 * (breakdown.gains[t] or 0.0) for t in ERROR_TYPES]
    xt = nice_ticks(0, max(max(gains), 1.0))
    axes = Axes(img, (170, 60, 860, 440), (0, xt[-1]), (0, len(ERROR_TYPES)))
    axes.frame(xt, [], font(13))
    draw = axes.draw
    for i, (kind, gain) in enumerate(zip(ERROR_TYPES, gains)):
        y0, y1 = axes.py(len(ERROR_TYPES) - i - 0.2), axes.py(len(ERROR_TYPES) - i - 0.8)
        if gain > 0:
            draw.rectangle([axes.px(0), y0, axes.px(gain), y1], fill=PALETTE[i % len(PALETTE)], outline=INK)
        shown = "n/a" if breakdown.gains[kind] is None else f"+{gain:.2f}"
        draw.text((axes.px(gain) + 6, (y0 + y1) / 2), f"{shown}  ({breakdown.counts[kind]})", fill=INK,
                  font=font(13), anchor="lm")
        draw.text((axes.box[0] - 8, (y0 + y1) / 2), kind, fill=INK, font=font(14), anchor="rm")
    draw.text(((axes.box[0] + axes.box[2]) / 2, 480), "AP50 added if only this error type were fixed "
              "(percentage points; number of errors in brackets)", fill=INK, font=font(15), anchor="mm")
    title(img, f"error breakdown: AP50 {100 * breakdown.ap50:.1f} (IoU foreground {breakdown.foreground_iou:g}, "
               f"background {breakdown.background_iou:g})", font(17))
    return save_png(img, path)


def ap_by_epoch_chart(points: list[tuple[int, float]], path: str | Path, heading: str) -> Path:
    """Box AP (percent) against epoch for a training run's checkpoints."""
    img = Image.new("RGB", (900, 600), "white")
    points = sorted(points)
    xs = [p[0] for p in points] or [0]
    ys = [p[1] for p in points] or [0.0]
    xt = nice_ticks(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    yt = nice_ticks(min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1)
    axes = Axes(img, (90, 60, 860, 520), (xt[0], xt[-1]), (yt[0], yt[-1]))
    axes.frame(xt, yt, font(13))
    axes.axis_labels("epoch", "box AP", font(15))
    title(img, heading, font(18))
    axes.line(xs, ys, PALETTE[0], width=3)
    for x, y in points:
        axes.dot(x, y, PALETTE[0])
    return save_png(img, path)
