"""A speed/accuracy chart (published box AP against measured fps) drawn with Pillow alone.

matplotlib is not a dependency, so this draws axes, nice ticks, grid, labelled points and titles itself.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#0f8d99", "#8a8a00",
           "#7f7f7f"]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable bundled font
    except TypeError:  # pragma: no cover - older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not hi > lo:
        lo, hi = lo - 1, hi + 1
    raw = (hi - lo) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(lo / step + 1e-9) * step
    ticks, v = [], first
    while v < hi + step * 0.999:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-9 else "0"


def _overlaps(a, b) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def speed_accuracy_chart(points: list[tuple[str, float, float]], path: str | Path, title: str = "",
                         xlabel: str = "measured speed (images/s)", ylabel: str = "published box AP",
                         size: tuple[int, int] = (960, 640)) -> Path:
    """Write a PNG with one labelled point per (name, fps, box AP) and return its path."""
    width, height = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    small, normal, big = _font(13), _font(15), _font(19)
    left, right, top, bottom = 80, 40, 60, 75
    x0, y0, x1, y1 = left, top, width - right, height - bottom  # plot area

    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    xt = nice_ticks(0.0, max(xs) * 1.15 if xs else 1.0)
    yt = nice_ticks(min(ys) - 0.5 if ys else 30.0, max(ys) + 0.5 if ys else 45.0)
    xmin, xmax, ymin, ymax = xt[0], xt[-1], yt[0], yt[-1]

    def px(x):
        return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0)

    def py(y):
        return y1 - (y - ymin) / (ymax - ymin) * (y1 - y0)

    for t in xt:  # grid, ticks and tick labels
        x = px(t)
        draw.line([(x, y0), (x, y1)], fill="#e6e6e6")
        draw.line([(x, y1), (x, y1 + 5)], fill="black")
        draw.text((x, y1 + 8), _label(t), fill="black", font=small, anchor="mt")
    for t in yt:
        y = py(t)
        draw.line([(x0, y), (x1, y)], fill="#e6e6e6")
        draw.line([(x0 - 5, y), (x0, y)], fill="black")
        draw.text((x0 - 8, y), _label(t), fill="black", font=small, anchor="rm")
    draw.rectangle([x0, y0, x1, y1], outline="black")

    draw.text(((x0 + x1) / 2, height - 22), xlabel, fill="black", font=normal, anchor="mm")
    ybox = draw.textbbox((0, 0), ylabel, font=normal)
    label_img = Image.new("RGBA", (ybox[2] + 4, ybox[3] + 4), (255, 255, 255, 0))
    ImageDraw.Draw(label_img).text((2, 2), ylabel, fill="black", font=normal)
    rotated = label_img.rotate(90, expand=True)
    img.paste(rotated, (14, int((y0 + y1) / 2 - rotated.height / 2)), rotated)
    if title:
        draw.text((width / 2, 24), title, fill="black", font=big, anchor="mm")
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
        tw, th = (lambda b: (b[2] - b[0], b[3] - b[1]))(draw.textbbox((0, 0), name, font=small))
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

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")
    return path
