"""A speed/accuracy chart (published box AP against measured fps) drawn with Pillow alone.

The axes come from retinanet.charts; this places the labelled points so that their names do not collide.
"""
from __future__ import annotations

from pathlib import Path

from retinanet.charts import PALETTE, Axes, font, nice_ticks, save_png, text_size, title as draw_title

__all__ = ["speed_accuracy_chart", "nice_ticks"]


def _overlaps(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def speed_accuracy_chart(points: list[tuple[str, float, float]], path: str | Path, title: str = "",
                         xlabel: str = "measured speed (images/s)", ylabel: str = "published box AP",
                         size: tuple[int, int] = (960, 640)) -> Path:
    """Write a PNG with one labelled point per (name, fps, box AP) and return its path."""
    from PIL import Image

    width, height = size
    img = Image.new("RGB", size, "white")
    small, normal, big = font(13), font(15), font(19)
    left, right, top, bottom = 80, 40, 60, 75
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    xt = nice_ticks(0.0, max(xs) * 1.15 if xs else 1.0)
    yt = nice_ticks(min(ys) - 0.5 if ys else 30.0, max(ys) + 0.5 if ys else 45.0)
    axes = Axes(img, (left, top, width - right, height - bottom), (xt[0], xt[-1]), (yt[0], yt[-1]))
    x0, y0, x1, y1 = axes.box
    draw, px, py = axes.draw, axes.px, axes.py
    axes.frame(xt, yt, small)
    axes.axis_labels(xlabel, ylabel, normal, x_gap=height - 22 - y1, y_gap=x0 - 14 - 10)
    if title:
        draw_title(img, title, big)
    if not points:
        draw.text(((x0 + x1) / 2, (y0 + y1) / 2), "no model has both a measured speed and a published box AP",
                  fill="#555555", font=normal, anchor="mm")

    taken = []  # label boxes and point discs already drawn, so labels do not cover each other
    r = 6
    centres = [(px(x), py(y)) for _, x, y in points]
    for cx, cy in centres:
        taken.append((cx - r, cy - r, cx + r, cy + r))
    for i, ((name, _, _), (cx, cy)) in enumerate(zip(points, centres)):
        colour = PALETTE[i % len(PALETTE)]
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline="black")
        tw, th = text_size(draw, name, small)
        candidates = [(cx + r + 4, cy - th / 2 - 2), (cx - r - 4 - tw, cy - th / 2 - 2),
                      (cx - tw / 2, cy - r - 4 - th - 2), (cx - tw / 2, cy + r + 4),
                      (cx + r + 4, cy - r - th - 2), (cx + r + 4, cy + r), (cx - r - 4 - tw, cy - r - th - 2),
                      (cx - r - 4 - tw, cy + r)]
        choice = None
        for tx, ty in candidates:
            box = (tx - 1, ty - 1, tx + tw + 1, ty + th + 4)
            inside = box[0] >= x0 + 2 and box[2] <= x1 - 2 and box[1] >= y0 + 2 and box[3] <= y1 - 2
            if inside and not any(_overlaps(box, t) for t in taken):
                choice = (tx, ty, box)
                break
        if choice is None:  # crowded: fall back to the right-hand side, clamped into the plot
            tx = min(max(cx + r + 4, x0 + 2), x1 - tw - 2)
            ty = min(max(cy - th / 2, y0 + 2), y1 - th - 4)
            choice = (tx, ty, (tx, ty, tx + tw, ty + th + 4))
        tx, ty, box = choice
        taken.append(box)
        draw.text((tx, ty), name, fill=colour, font=small)

    return save_png(img, path)
