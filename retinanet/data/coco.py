"""A COCO-format detection set, validated up front so that a bad dataset fails in one line, before any work.

Labels follow the reference's `cat2label`: label i is the i-th category id in ascending order (for the standard
COCO files, the 80 classes in MMDetection's order).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from retinanet.errors import DatasetError

_SHOW_MISSING = 5


def _read_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise DatasetError(f"annotation file not found: {ann_file}")
    try:
        with open(ann_file, "rb") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"annotation file {ann_file} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {ann_file} is not a COCO object (top level is {type(data).__name__})")
    return data


def _check_schema(data: dict, ann_file: Path) -> None:
    """The parts of the COCO format we rely on, checked so that pycocotools never fails obscurely later."""
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {ann_file} has no '{key}' list: is it a COCO detection file?")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise DatasetError(f"annotation file {ann_file}: 'annotations' is not a list")
    for i, im in enumerate(data["images"]):
        if not (isinstance(im, dict) and isinstance(im.get("id"), int) and isinstance(im.get("file_name"), str)):
            raise DatasetError(f"annotation file {ann_file}: images[{i}] lacks an integer 'id' or a 'file_name'")
    for i, cat in enumerate(data["categories"]):
        if not (isinstance(cat, dict) and isinstance(cat.get("id"), int) and isinstance(cat.get("name"), str)):
            raise DatasetError(f"annotation file {ann_file}: categories[{i}] lacks an integer 'id' or a 'name'")
    image_ids = {im["id"] for im in data["images"]}
    cat_ids = {c["id"] for c in data["categories"]}
    for i, ann in enumerate(data["annotations"]):
        bbox = ann.get("bbox") if isinstance(ann, dict) else None
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DatasetError(f"annotation file {ann_file}: annotations[{i}] has no [x, y, w, h] 'bbox'")
        if ann.get("image_id") not in image_ids:
            raise DatasetError(f"annotation file {ann_file}: annotations[{i}] refers to unknown image "
                               f"{ann.get('image_id')!r}")
        if ann.get("category_id") not in cat_ids:
            raise DatasetError(f"annotation file {ann_file}: annotations[{i}] has unknown category "
                               f"{ann.get('category_id')!r}")
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
        ann.setdefault("id", i + 1)


class CocoSet:
    """Images, categories and boxes of one COCO-format set. Use `CocoSet.load`."""

    def __init__(self, coco, ann_file: Path, images_dir: Path, image_ids: list[int], total_images: int):
        self.coco = coco
        self.ann_file, self.images_dir = ann_file, images_dir
        self.image_ids = image_ids
        self.total_images = total_images
        self.cat_ids = sorted(coco.getCatIds())
        self.class_names = tuple(coco.cats[c]["name"] for c in self.cat_ids)
        self.label_of = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}

    @classmethod
    def load(cls, ann_file: str | os.PathLike, images_dir: str | os.PathLike, limit: int | None = None,
             check_files: bool = True) -> "CocoSet":
        """Read and check a set; `limit` keeps the first N images by id. Raises DatasetError (one line)."""
        from pycocotools.coco import COCO

        ann_file, images_dir = Path(ann_file), Path(images_dir)
        data = _read_json(ann_file)
        _check_schema(data, ann_file)
        if not data["categories"]:
            raise DatasetError(f"annotation file {ann_file} lists no categories")
        if not data["images"]:
            raise DatasetError(f"annotation file {ann_file} lists no images: nothing to do")
        if limit is not None and limit < 1:
            raise DatasetError(f"--limit must be at least 1, not {limit}")
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            coco.createIndex()
        ids = sorted(coco.getImgIds())
        subset = ids[:limit] if limit else ids
        found = cls(coco, ann_file, images_dir, subset, len(ids))
        if check_files:
            found.check_files()
        return found

    def check_files(self) -> None:
        if not self.images_dir.is_dir():
            raise DatasetError(f"image directory not found: {self.images_dir}")
        missing = [self.info(i)["file_name"] for i in self.image_ids if not self.path(i).is_file()]
        if missing:
            shown = ", ".join(missing[:_SHOW_MISSING]) + (", ..." if len(missing) > _SHOW_MISSING else "")
            raise DatasetError(f"{len(missing)} of {len(self.image_ids)} images listed in {self.ann_file.name} are "
                               f"missing from {self.images_dir}: {shown}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def info(self, image_id: int) -> dict:
        return self.coco.imgs[image_id]

    def path(self, image_id: int) -> Path:
        return self.images_dir / self.info(image_id)["file_name"]

    def has_annotations(self, image_id: int) -> bool:
        """Any annotation at all, crowd included: the reference's training filter for empty images."""
        return bool(self.coco.imgToAnns.get(image_id))

    def annotations(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (n, 4) xyxy float32, labels (n,) int64) for training, parsed as the reference does: crowd and
        `ignore` annotations, and boxes with area <= 0 or a side < 1, are left out; a box is [x, y, x+w, y+h]."""
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = (float(v) for v in ann["bbox"])
            if ann.get("ignore", False) or ann.get("iscrowd", 0) or ann.get("area", w * h) <= 0 or w < 1 or h < 1:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(self.label_of[ann["category_id"]])
        return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64))
