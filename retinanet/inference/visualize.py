"""Annotated copies of images: a box, class name and score per detection, legible at any image size."""
from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from retinanet.errors import ArgumentError, listed


def class_colour(label: int) -> tuple[int, int, int]:
    """A bright colour per class, spread around the hue circle by the golden ratio so neighbours differ."""
    r, g, b = colorsys.hsv_to_rgb((label * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_colour(bg: tuple[int, int, int]) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2] > 140 else (255, 255, 255)


def draw_detections(image_rgb: np.ndarray, boxes, scores, labels, class_names) -> Image.Image:
    """An RGB PIL image with the detections drawn; line width and font scale with the image. The image is an
    HxWx3 uint8 RGB array, or anything else predict reads (a gray or RGBA array, a PIL image, a path)."""
    if not (isinstance(image_rgb, np.ndarray) and image_rgb.ndim == 3 and image_rgb.shape[2] == 3
            and image_rgb.dtype == np.uint8):
        from retinanet.data.images import to_bgr

        image_rgb = np.ascontiguousarray(to_bgr(image_rgb)[:, :, ::-1])
    labels = [int(v) for v in labels]
    if not len(boxes) == len(scores) == len(labels):  # zip would silently drop the longer lists' tail
        raise ArgumentError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels: one each per "
                            "detection")
    unnamed = sorted({v for v in labels if not 0 <= v < len(class_names)})
    if unnamed:
        raise ArgumentError(f"label(s) {listed(unnamed)} have no class name "
                            f"({len(class_names)} class names, labels 0 to {len(class_names) - 1})")
    img = Image.fromarray(image_rgb)
    draw = ImageDraw.Draw(img)
    side = max(img.size)
    width = max(1, round(side / 400))
    font_size = max(10, round(side / 55))
    try:
        font = ImageFont.load_default(size=font_size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    for box, score, label in sorted(zip(boxes, scores, labels), key=lambda d: d[1]):  # best drawn last, on top
        x1, y1, x2, y2 = (float(v) for v in box)
        colour = class_colour(int(label))
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=width)
        text = f"{class_names[int(label)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        ty = y1 - th - 2 * width if y1 - th - 2 * width >= 0 else y1  # above the box, else inside it
        draw.rectangle([x1, ty, x1 + tw + 2 * width, ty + th + 2 * width], fill=colour)
        draw.text((x1 + width - left, ty + width - top), text, fill=_text_colour(colour), font=font)
    return img
