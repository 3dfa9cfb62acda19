"""Charts drawn with Pillow alone (matplotlib is not a dependency): axes with round ticks, grid and labels, lines,
bars, legends and colour-mapped cells, into a whole image or a panel of one. Used by `rdet bench --plot` and by
the evaluation plots.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from retinanet.atomic_write import atomic_path

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#0f8d99", "#8a8a00",
           "#7f7f7f"]
GRID, INK, MUTED = "#e6e6e6", "black", "#555555"


def font(size: int):
    return ImageFont.load_default(size=size)  # Pillow >= 10.1 (pyproject): a scalable bundled font


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


def tick_label(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-9 else "0"


def text_size(draw: ImageDraw.ImageDraw, text: str, face) -> tuple[int, int]:
    box = draw.textbbox((0, 0), text, font=face)
    return box[2] - box[0], box[3] - box[1]


def vertical_text(img: Image.Image, text: str, centre: tuple[float, float], face, fill=INK) -> None:
    """`text` turned 90 degrees (read bottom to top), centred on `centre`."""
    box = ImageDraw.Draw(img).textbbox((0, 0), text, font=face)
    label = Image.new("RGBA", (box[2] + 4, box[3] + 4), (255, 255, 255, 0))
    ImageDraw.Draw(label).text((2, 2), text, fill=fill, font=face)
    rotated = label.rotate(90, expand=True)
    img.paste(rotated, (int(centre[0] - rotated.width / 2), int(centre[1] - rotated.height / 2)), rotated)


class Axes:
    """A plot area `box` (x0, y0, x1, y1 in pixels) of `img` showing data in xlim x ylim."""

    def __init__(self, img: Image.Image, box, xlim: tuple[float, float], ylim: tuple[float, float]):
        self.img, self.draw = img, ImageDraw.Draw(img)
        self.box = tuple(box)
        self.xlim, self.ylim = xlim, ylim

    def px(self, x: float) -> float:
        x0, _, x1, _ = self.box
        return x0 + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (x1 - x0)

    def py(self, y: float) -> float:
        _, y0, _, y1 = self.box
        return y1 - (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (y1 - y0)

    def frame(self, xticks, yticks, face, tick_labels: bool = True) -> None:
        """Grid lines at the ticks, tick marks and labels, and the box around the plot area."""
        x0, y0, x1, y1 = self.box
        for t in xticks:
            x = self.px(t)
            self.draw.line([(x, y0), (x, y1)], fill=GRID)
            self.draw.line([(x, y1), (x, y1 + 4)], fill=INK)
            if tick_labels:
                self.draw.text((x, y1 + 7), tick_label(t), fill=INK, font=face, anchor="mt")
        for t in yticks:
            y = self.py(t)
            self.draw.line([(x0, y), (x1, y)], fill=GRID)
            self.draw.line([(x0 - 4, y), (x0, y)], fill=INK)
            if tick_labels:
                self.draw.text((x0 - 7, y), tick_label(t), fill=INK, font=face, anchor="rm")
        self.draw.rectangle([x0, y0, x1, y1], outline=INK)

    def axis_labels(self, xlabel: str, ylabel: str, face, x_gap: int = 40, y_gap: int = 55) -> None:
        x0, y0, x1, y1 = self.box
        self.draw.text(((x0 + x1) / 2, y1 + x_gap), xlabel, fill=INK, font=face, anchor="mm")
        vertical_text(self.img, ylabel, (x0 - y_gap, (y0 + y1) / 2), face)

    def line(self, xs, ys, colour: str, width: int = 2) -> None:
        points = [(self.px(x), self.py(y)) for x, y in zip(xs, ys)]
        if len(points) > 1:
            self.draw.line(points, fill=colour, width=width, joint="curve")
        elif points:
            self.dot(xs[0], ys[0], colour)

    def dot(self, x: float, y: float, colour: str, r: int = 4) -> None:
        cx, cy = self.px(x), self.py(y)
        self.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour, outline=INK)

    def bar(self, x_lo: float, x_hi: float, y: float, colour: str) -> None:
        """A vertical bar from the x axis (or ylim[0]) up to y."""
        base = self.py(max(self.ylim[0], 0.0))
        top = self.py(y)
        if abs(base - top) >= 0.5:
            self.draw.rectangle([self.px(x_lo), min(base, top), self.px(x_hi), max(base, top)], fill=colour,
                                outline=INK)


def title(img: Image.Image, text: str, face, y: int = 24) -> None:
    ImageDraw.Draw(img).text((img.width / 2, y), text, fill=INK, font=face, anchor="mm")


def legend(img: Image.Image, entries: list[tuple[str, str]], top_right: tuple[float, float], face) -> None:
    """A boxed key of (label, colour) entries whose top-right corner is at `top_right`."""
    draw = ImageDraw.Draw(img)
    if not entries:
        return
    sizes = [text_size(draw, label, face) for label, _ in entries]
    row = max(h for _, h in sizes) + 8
    width = max(w for w, _ in sizes) + 40
    x1, y0 = top_right
    x0 = x1 - width
    draw.rectangle([x0, y0, x1, y0 + row * len(entries) + 6], fill="white", outline=MUTED)
    for i, (label, colour) in enumerate(entries):
        y = y0 + 6 + i * row + row / 2 - 2
        draw.line([(x0 + 8, y), (x0 + 28, y)], fill=colour, width=4)
        draw.text((x0 + 34, y), label, fill=INK, font=face, anchor="lm")


def blend(low: tuple[int, int, int], high: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    """The colour a fraction t in [0, 1] of the way from `low` to `high`."""
    t = min(1.0, max(0.0, t))
    return tuple(round(a + (b - a) * t) for a, b in zip(low, high))


def save_png(img: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a pipe or device gets the bytes (PIL cannot seek in it), a link its target
        img.save(tmp, format="PNG")
    return path
