"""A synthetic COCO-format detection set: solid circles, squares and triangles on noise, boxes from the drawn pixels.

Easy enough for a tiny RetinaNet to learn on a CPU in a minute, real enough to exercise every part of training:
PNG files read by OpenCV, annotation JSON parsed by pycocotools, portrait and landscape images (both aspect
groups), category ids that are not 1..K, and an optional image with only a crowd annotation or none at all.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")  # the tiny zoo's classes, so a tiny18 checkpoint keeps its head
CATEGORY_IDS = (3, 7, 11)  # not 1..K: labels must map through the sorted ids


def _draw(kind: str, size: int, cx: int, cy: int, canvas: np.ndarray, color) -> None:
    r = size // 2
    if kind == "circle":
        cv2.circle(canvas, (cx, cy), r, color, thickness=-1, lineType=cv2.LINE_8)
    elif kind == "square":
        cv2.rectangle(canvas, (cx - r, cy - r), (cx + r, cy + r), color, thickness=-1)
    else:
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(canvas, [pts], color)


def write_shapes(directory: Path, images: int = 24, size: tuple[int, int] = (160, 128), seed: int = 0,
                 classes: tuple[str, ...] = CLASSES, category_ids: tuple[int, ...] = CATEGORY_IDS,
                 max_shapes: int = 3, min_size: int = 28, max_size: int = 56, portrait_every: int = 4,
                 extra_empty: bool = False) -> tuple[Path, Path]:
    """(annotation file, image directory). Images are `size` = (w, h), every `portrait_every`-th one (h, w). With
    `extra_empty`, two more images: one with only a crowd annotation (kept for training, all negatives), one with
    no annotation (skipped for training)."""
    rng = np.random.default_rng(seed)
    img_dir = directory / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": cid, "name": name} for cid, name in zip(category_ids, classes)]
    coco = {"images": [], "annotations": [], "categories": cats}
    for i in range(images):
        w, h = size[::-1] if portrait_every and (i + 1) % portrait_every == 0 else size
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noise background
        img = cv2.GaussianBlur(img, (5, 5), 0)
        placed = []
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            for _attempt in range(20):  # shapes do not overlap, so every drawn box is fully visible
                s = int(rng.integers(min_size, max_size + 1))
                cx, cy = int(rng.integers(s // 2 + 1, w - s // 2 - 1)), int(rng.integers(s // 2 + 1, h - s // 2 - 1))
                box = (cx - s // 2 - 2, cy - s // 2 - 2, cx + s // 2 + 2, cy + s // 2 + 2)
                if all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed):
                    placed.append(box)
                    break
            else:
                continue
            label = int(rng.integers(len(classes)))
            mask = np.zeros((h, w), np.uint8)
            _draw(classes[label], s, cx, cy, mask, 255)
            ys, xs = np.nonzero(mask)
            color = [int(c) for c in rng.integers(0, 256, 3)]
            img[mask > 0] = color
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": i + 1,
                                        "category_id": category_ids[label], "bbox": [x0, y0, x1 - x0, y1 - y0],
                                        "area": float(mask.sum() / 255), "iscrowd": 0})
        name = f"shape_{i:04d}.png"
        cv2.imwrite(str(img_dir / name), img)
        coco["images"].append({"id": i + 1, "file_name": name, "width": w, "height": h})
    if extra_empty:
        for k, crowd in ((images + 1, True), (images + 2, False)):
            w, h = size
            cv2.imwrite(str(img_dir / f"extra_{k}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            coco["images"].append({"id": k, "file_name": f"extra_{k}.png", "width": w, "height": h})
            if crowd:
                coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": k,
                                            "category_id": category_ids[0], "bbox": [10, 10, 40, 40],
                                            "area": 1600.0, "iscrowd": 1})
    ann = directory / "annotations.json"
    ann.write_text(json.dumps(coco))
    return ann, img_dir


def rectangles_image(seed: int, h: int, w: int, count: int = 12) -> np.ndarray:
    """HxWx3 uint8 of `count` flat random rectangles on grey: a photo's clustered detections rather than noise's
    (for inference tests with trained-like weights)."""
    g = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    for _ in range(count):
        y, x = g.integers(0, h - 10), g.integers(0, w - 10)
        img[y:y + g.integers(10, h // 2), x:x + g.integers(10, w // 2)] = g.integers(0, 255, 3)
    return img
