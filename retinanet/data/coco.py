"""A COCO-format detection set, validated up front so that a bad dataset fails in one line, before any work.

Labels follow the reference's `cat2label`: label i is the i-th category id in ascending order (for the standard
COCO files, the 80 classes in MMDetection's order).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from retinanet.coco_api import pycocotools_classes
from retinanet.errors import ArgumentError, DatasetError, first_line, listed
from retinanet.file_check import file_problem
from retinanet.values import check_path, is_finite_number, is_whole

_SHOW_MISSING = 5


def read_json_file(path: Path, what: str):
    """The parsed contents of a user's JSON file (`what` names it in messages: "annotation file"); DatasetError
    in one line when it is missing, not a regular file (a FIFO would block), unreadable or not JSON, including
    JSON nested too deeply for the parser and integers too long for Python to convert."""
    problem = file_problem(path)
    if problem:
        raise DatasetError(f"{what} {path}: {problem}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except RecursionError:
        raise DatasetError(f"{what} {path} nests its JSON too deeply to read") from None
    except OSError as e:
        raise DatasetError(f"{what} {path} cannot be read ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, the int digits limit
        raise DatasetError(f"{what} {path} is not valid JSON ({first_line(e)})") from None


def _read_json(ann_file: Path) -> dict:
    data = read_json_file(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise DatasetError(f"annotation file {ann_file} is not a COCO object (top level is {type(data).__name__})")
    return data


_MAX_COORD = 1e6  # no image rdet reads is wider than this (see images.max_pixels); larger is corrupt data


def _shown(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


_LISTS = {"category": "categories"}  # the COCO list each record kind lives in, where it is not kind + "s"


class _Where:
    """Names the offending record in a message: 'instances.json: image id 7 (images[3])'."""

    def __init__(self, ann_file: Path):
        self.ann_file = ann_file

    def fail(self, what: str, record, i: int, problem: str):
        rid = record.get("id") if isinstance(record, dict) else None
        where = f"{_LISTS.get(what, what + 's')}[{i}]"
        label = f"{what} id {_shown(rid)} ({where})" if rid is not None else where
        raise DatasetError(f"annotation file {self.ann_file}: {label}: {problem}")


def _check_images(images: list, where: _Where) -> set:
    ids = set()
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            where.fail("image", im, i, "is not an object")
        if not is_whole(im.get("id")):
            where.fail("image", im, i, f"'id' must be an integer, not {_shown(im.get('id'))}")
        if im["id"] in ids:
            where.fail("image", im, i, "duplicate image id")
        ids.add(im["id"])
        name = im.get("file_name")
        if not (isinstance(name, str) and name and "\0" not in name):
            where.fail("image", im, i, f"'file_name' must be a file name, not {_shown(name)}")
        for key in ("width", "height"):
            if key in im and not (is_whole(im[key]) and 0 < im[key] <= _MAX_COORD):
                where.fail("image", im, i, f"'{key}' must be a positive integer, not {_shown(im[key])}")
    return ids


def _check_categories(categories: list, where: _Where) -> set:
    ids = set()
    for i, cat in enumerate(categories):
        if not (isinstance(cat, dict) and is_whole(cat.get("id")) and isinstance(cat.get("name"), str)):
            where.fail("category", cat, i, "lacks an integer 'id' or a 'name'")
        if cat["id"] in ids:
            where.fail("category", cat, i, "duplicate category id")
        ids.add(cat["id"])
    return ids


def _check_annotation(ann, i: int, image_ids: set, cat_ids: set, where: _Where) -> None:
    if not isinstance(ann, dict):
        where.fail("annotation", ann, i, "is not an object")
    if "id" in ann and not is_whole(ann["id"]):
        where.fail("annotation", ann, i, f"'id' must be an integer, not {_shown(ann['id'])}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(is_finite_number(v) for v in bbox)):
        where.fail("annotation", ann, i, f"'bbox' must be [x, y, w, h] of finite numbers, not {_shown(bbox)}")
    if bbox[2] < 0 or bbox[3] < 0:
        where.fail("annotation", ann, i, f"'bbox' has a negative width or height: {_shown(bbox)}")
    if any(abs(v) > _MAX_COORD for v in bbox):
        where.fail("annotation", ann, i, f"'bbox' is far outside any image: {_shown(bbox)}")
    if not is_whole(ann.get("image_id")) or ann["image_id"] not in image_ids:
        where.fail("annotation", ann, i, f"refers to unknown image {_shown(ann.get('image_id'))}")
    if not is_whole(ann.get("category_id")) or ann["category_id"] not in cat_ids:
        where.fail("annotation", ann, i, f"has unknown category {_shown(ann.get('category_id'))}")
    if "area" in ann and not (is_finite_number(ann["area"]) and ann["area"] >= 0):
        where.fail("annotation", ann, i, f"'area' must be a finite number >= 0, not {_shown(ann['area'])}")
    if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
        where.fail("annotation", ann, i, f"'iscrowd' must be 0 or 1, not {_shown(ann['iscrowd'])}")


def _check_schema(data: dict, ann_file: Path) -> None:
    """Every field we rely on, checked one by one so that pycocotools, eval and training never fail obscurely
    later (after the whole inference); each message names the offending image, category or annotation id."""
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"annotation file {ann_file} has no '{key}' list: is it a COCO detection file?")
    data.setdefault("annotations", [])
    if not isinstance(data["annotations"], list):
        raise DatasetError(f"annotation file {ann_file}: 'annotations' is not a list")
    where = _Where(ann_file)
    image_ids = _check_images(data["images"], where)
    cat_ids = _check_categories(data["categories"], where)
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, image_ids, cat_ids, where)
        if "id" in ann:
            if ann["id"] in ann_ids:
                where.fail("annotation", ann, i, "duplicate annotation id")
            ann_ids.add(ann["id"])
    next_id = max(ann_ids, default=0) + 1
    for ann in data["annotations"]:
        bbox = ann["bbox"]
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(bbox[2]) * float(bbox[3]))
        if "id" not in ann:  # pycocotools indexes by id: give each a fresh one
            ann["id"], next_id = next_id, next_id + 1


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
        COCO, _ = pycocotools_classes()
        check_path(ann_file, "ann_file")
        check_path(images_dir, "images_dir")
        if limit is not None and not (is_whole(limit) and limit >= 1):  # 2.5 failed in slicing, True kept 1 image
            raise DatasetError(f"--limit must be a whole number of at least 1, not {limit!r}")
        ann_file, images_dir = Path(ann_file), Path(images_dir)
        data = _read_json(ann_file)
        _check_schema(data, ann_file)
        if not data["categories"]:
            raise DatasetError(f"annotation file {ann_file} lists no categories")
        if not data["images"]:
            raise DatasetError(f"annotation file {ann_file} lists no images: nothing to do")
        coco = COCO()
        coco.dataset = data
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            coco.createIndex()
        ids = sorted(coco.getImgIds())
        subset = ids[:int(limit)] if limit else ids
        found = cls(coco, ann_file, images_dir, subset, len(ids))
        if check_files:
            found.check_files()
        return found

    def check_files(self) -> None:
        if not self.images_dir.is_dir():
            raise DatasetError(f"image directory not found: {self.images_dir}")
        missing = [self.info(i)["file_name"] for i in self.image_ids if not self.path(i).is_file()]
        if missing:
            odd = any(self.images_dir.joinpath(n).exists() for n in missing)  # a directory or a FIFO by that name
            what = "missing (or not regular files) in" if odd else "missing from"
            raise DatasetError(f"{len(missing)} of {len(self.image_ids)} images listed in {self.ann_file.name} are "
                               f"{what} {self.images_dir}: {listed(missing, _SHOW_MISSING)}")

    def check_resizable(self, scale, ids: list[int] | None = None) -> None:
        """Before any work: DatasetError for an image whose annotated size resizes to 0 pixels on a side at
        `scale` (preprocess.rescale_size's rule; the decoded image meets it again when read)."""
        from retinanet.data.preprocess import rescale_size
        from retinanet.errors import ImageError

        for image_id in self.image_ids if ids is None else ids:
            info = self.info(image_id)
            if info.get("width") and info.get("height"):
                try:
                    rescale_size(info["width"], info["height"], scale)
                except ImageError as e:
                    raise DatasetError(f"{self.ann_file}: image id {image_id} ({info['file_name']}): {e}") from None

    def __len__(self) -> int:
        return len(self.image_ids)

    def chosen_ids(self, image_ids=None) -> list[int]:
        """`image_ids` as a list of Python ints (default: the set's own), ArgumentError unless each is an image of
        this set, given once: an unknown id failed deep in detection (KeyError) and scored as 'no ground truth'
        (-1) without a word; a repeated one was detected, and scored, twice."""
        if image_ids is None:
            return list(self.image_ids)
        if isinstance(image_ids, (str, bytes)) or not isinstance(image_ids, Iterable):
            raise ArgumentError(f"image_ids must be a list of image ids, not {type(image_ids).__name__}")
        ids = list(image_ids)
        odd = [i for i in ids if not is_whole(i)]
        if odd:
            raise ArgumentError(f"image_ids must be integers, not {odd[0]!r}")
        ids = [int(i) for i in ids]
        unknown = sorted(set(ids) - set(self.coco.imgs))
        if unknown:
            raise ArgumentError(f"image_ids: {len(unknown)} id(s) that {self.ann_file.name} lacks: {listed(unknown)}")
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            raise ArgumentError(f"image_ids lists {len(twice)} image(s) more than once: {listed(twice)}")
        return ids

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
