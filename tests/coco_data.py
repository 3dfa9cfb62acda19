"""Small COCO-format sets on disk: a few real JPEG/PNG images and an annotation file written by hand.

Category ids are listed out of order and are not 1..K, and image ids are neither sorted nor contiguous, so that
a test notices a label -> category or image-order mistake.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint
from tiny_zoo import CLASSES

# (id, name) as listed in the file; sorted by id they are circle (3), square (7), triangle (12): labels 0, 1, 2
CATEGORIES = ((12, "triangle"), (3, "circle"), (7, "square"))
CAT_IDS = (3, 7, 12)  # label i -> CAT_IDS[i]
assert tuple(name for _, name in sorted(CATEGORIES)) == CLASSES

# (image id, file name, width, height), listed out of id order
IMAGES = ((42, "b.jpg", 160, 120), (7, "a.png", 64, 48), (1000, "c.jpg", 96, 128))


def write_images(directory: Path, images=IMAGES, seed: int = 0) -> list[dict]:
    """Random-texture images; returns their COCO image records in the listed order."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for image_id, name, w, h in images:
        pixels = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(directory / name, **({"quality": 95} if name.endswith(".jpg") else {}))
        records.append({"id": image_id, "file_name": name, "width": w, "height": h})
    return records


def annotation(image_id: int, category_id: int, bbox, ann_id: int) -> dict:
    x, y, w, h = (float(v) for v in bbox)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": [x, y, w, h], "area": w * h,
            "iscrowd": 0}


def write_annotations(path: Path, images: list[dict], boxes, categories=CATEGORIES) -> Path:
    """`boxes`: (image_id, category_id, [x, y, w, h]) triples."""
    anns = [annotation(i, c, b, n + 1) for n, (i, c, b) in enumerate(boxes)]
    doc = {"images": images, "annotations": anns,
           "categories": [{"id": cid, "name": name, "supercategory": "shape"} for cid, name in categories]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def boxes_from_results(results: list[dict], keep=lambda index: True) -> list[tuple]:
    """Ground truth made of detections (COCO results dicts); `keep(i)` picks them by their index in the list."""
    return [(r["image_id"], r["category_id"], r["bbox"]) for i, r in enumerate(results) if keep(i)]


def write_calm_weights(path: Path, seed: int = 0, depth: int = 18, groups: int = 1, base_width: int = 64,
                       style: str = "pytorch") -> Path:
    """A 3-class reference checkpoint (by default tiny18's architecture) whose head is scaled down: random weights
    saturate every score at 1.0 (ties everywhere) and stretch boxes into slivers; these give distinct scores
    around 0.6-0.8 and boxes a few pixels wide, like a real model's."""
    sd = reference_state_dict(depth=depth, groups=groups, base_width=base_width, num_classes=len(CLASSES),
                              seed=seed)
    if depth >= 50:  # residual branches at a fifth, as in trained networks: 50-101 random blocks blow features up
        for key in sd:
            if key.endswith(("bn3.weight", "bn3.bias")):
                sd[key] *= 0.2
    if style == "caffe":  # its input is not divided by a std of ~58: shrink the stem to match
        sd["backbone.conv1.weight"] /= 58.0
    sd["bbox_head.retina_cls.weight"] *= 0.1
    sd["bbox_head.retina_cls.bias"].fill_(-1.0)
    sd["bbox_head.retina_reg.weight"] *= 0.05
    path.parent.mkdir(parents=True, exist_ok=True)
    save_reference_checkpoint(path, sd, classes=CLASSES)
    return path
