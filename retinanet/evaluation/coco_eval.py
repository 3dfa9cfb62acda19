"""COCO box AP: a detector over a CocoSet (one shard per process under torchrun), scored by pycocotools' COCOeval.

    coco_set = CocoSet.load("coco/annotations/instances_val2017.json", "coco/val2017")
    results = run_detection(detector, coco_set, batch_size=1, workers=2)
    coco_metrics(coco_set, results)["bbox_mAP"]   # x101_32x4d_fpn_2x publishes 0.401

The results are COCO results dicts (image_id, category_id, bbox [x, y, w, h], score), label i scored as the
set's i-th smallest category id, as the reference's cat2label. Scoring and results files need no torch (re-scoring
saved detections starts fast); detection imports it on first use.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable

from retinanet.atomic_write import write_text_atomically
from retinanet.data.coco import CocoSet
from retinanet.errors import DatasetError, ImageError

# COCOeval.stats in order: (name, what, IoU, area, max detections)
METRICS = (
    ("bbox_mAP", "AP", "0.50:0.95", "all", 100),
    ("bbox_mAP_50", "AP", "0.50", "all", 100),
    ("bbox_mAP_75", "AP", "0.75", "all", 100),
    ("bbox_mAP_s", "AP", "0.50:0.95", "small", 100),
    ("bbox_mAP_m", "AP", "0.50:0.95", "medium", 100),
    ("bbox_mAP_l", "AP", "0.50:0.95", "large", 100),
    ("AR_1", "AR", "0.50:0.95", "all", 1),
    ("AR_10", "AR", "0.50:0.95", "all", 10),
    ("AR_100", "AR", "0.50:0.95", "all", 100),
    ("AR_s", "AR", "0.50:0.95", "small", 100),
    ("AR_m", "AR", "0.50:0.95", "medium", 100),
    ("AR_l", "AR", "0.50:0.95", "large", 100),
)
METRIC_NAMES = tuple(m[0] for m in METRICS)


# --- detection ---------------------------------------------------------------------------------------------


class CocoImages:
    """Image i decoded and pre-processed on the CPU, in a DataLoader worker: (tensor, ImageMeta, image_id).

    A map-style dataset (DataLoader needs only __getitem__ and __len__). It holds paths, not the CocoSet, so that
    workers started by spawn do not copy the whole annotation index."""

    def __init__(self, paths: list[Path], image_ids: list[int], cfg):
        self.paths, self.image_ids, self.cfg = paths, image_ids, cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from retinanet.data.images import read_bgr
        from retinanet.data.preprocess import prepare

        try:
            bgr = read_bgr(self.paths[i])
        except ImageError as e:
            # Returned, not raised: a worker's exception reaches the main process wrapped in a multi-line
            # traceback, and the user should see one line naming the file.
            return None, str(e), self.image_ids[i]
        tensor, meta = prepare(bgr, self.cfg, "cpu")
        return tensor, meta, self.image_ids[i]


def _keep_as_list(batch):
    return batch  # images differ in size: Detector.detect_prepared groups and pads them


def _worker_init(_):
    import cv2

    cv2.setNumThreads(1)  # OpenCV's own thread pool in many forked workers oversubscribes (and can hang)


def check_classes(num_classes: int, coco_set: CocoSet) -> None:
    """Label i is scored as the set's i-th category, so the counts must agree."""
    if num_classes != len(coco_set.cat_ids):
        raise DatasetError(f"the model predicts {num_classes} classes but {coco_set.ann_file.name} has "
                           f"{len(coco_set.cat_ids)} categories: evaluate it on a set with the same classes")


def run_detection(detector, coco_set: CocoSet, batch_size: int = 1, workers: int = 2,
                  progress: Callable[[int], None] | None = None, dist=None,
                  image_ids: list[int] | None = None) -> list[dict]:
    """COCO results for `image_ids` (default: the set's), at the model's own score threshold (0.05).

    Under torchrun each process detects its shard of the images and rank 0 returns every result, in image order
    (the order a single process gives, so the AP is identical); other ranks return []. `progress(n)` is called
    after each batch with the number of images this process finished. `dist`: a DistInfo (default: one process).
    """
    from torch.utils.data import DataLoader

    from retinanet.distributed import DistInfo, gather_to_main, shard

    dist = dist or DistInfo()
    check_classes(detector.cfg.num_classes, coco_set)
    ids = list(coco_set.image_ids if image_ids is None else image_ids)
    mine = shard(ids, dist)
    dataset = CocoImages([coco_set.path(i) for i in mine], mine, detector.cfg)
    loader = DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False, num_workers=workers,
                        collate_fn=_keep_as_list, worker_init_fn=_worker_init if workers else None,
                        pin_memory=detector.device.type == "cuda")
    cat_ids = tuple(coco_set.cat_ids)
    per_image: dict[int, list[dict]] = {}
    for batch in loader:
        for tensor, meta, _ in batch:
            if tensor is None:
                raise DatasetError(meta)  # the ImageError's one line
        prepared = [(t.to(detector.device, non_blocking=True), meta) for t, meta, _ in batch]
        for (_, _, image_id), dets in zip(batch, detector.detect_prepared(prepared, batch_size=len(batch))):
            per_image[image_id] = replace(dets, category_ids=cat_ids).to_coco(image_id)
        if progress is not None:
            progress(len(batch))
    parts = gather_to_main(per_image, dist)
    if not dist.is_main:
        return []
    merged = {k: v for part in parts for k, v in part.items()}
    return [r for image_id in ids for r in merged[image_id]]


# --- scoring -----------------------------------------------------------------------------------------------


def _results_as_coco(gt, results: list[dict]):
    """The detections as a COCO object for COCOeval. COCO.loadRes fails on an empty list (it reads
    results[0]), so no detections at all become an empty results set: AP 0 wherever there is ground truth."""
    from pycocotools.coco import COCO

    if results:
        return gt.loadRes([dict(r) for r in results])  # copies: loadRes adds id, area and iscrowd in place
    empty = COCO()
    empty.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                     "annotations": []}
    empty.createIndex()
    return empty


def _check_ids(coco_set: CocoSet, results: list[dict]) -> None:
    """Detections on images or categories the set lacks mean they were made on another set (COCOeval would
    fail on the first and silently drop the second)."""
    for key, known, what in (("image_id", coco_set.coco.imgs, "image"), ("category_id", coco_set.coco.cats,
                                                                           "category")):
        unknown = sorted({r[key] for r in results} - set(known))
        if unknown:
            shown = ", ".join(str(i) for i in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise DatasetError(f"the detections name {len(unknown)} {what} id(s) that {coco_set.ann_file.name} "
                               f"lacks: {shown} (were they made on another set?)")


def coco_metrics(coco_set: CocoSet, results: list[dict], image_ids: list[int] | None = None) -> dict[str, float]:
    """The 12 COCOeval bbox figures as fractions, by name (METRIC_NAMES), over `image_ids` (default: the set's,
    i.e. the first N under a limit). A figure is -1 where the images hold no ground truth of that size, as
    COCOeval (and the reference's log) gives it. COCOeval's prints are silenced."""
    from pycocotools.cocoeval import COCOeval

    _check_ids(coco_set, results)
    ids = sorted(coco_set.image_ids if image_ids is None else image_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        dt = _results_as_coco(coco_set.coco, results)
        ev = COCOeval(coco_set.coco, dt, "bbox")
        ev.params.imgIds = ids
        ev.params.catIds = list(coco_set.cat_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}


# --- results files -----------------------------------------------------------------------------------------


def save_results(path: str | os.PathLike, results: list[dict]) -> None:
    """COCO results JSON, written atomically (a crash never leaves half a file)."""
    path = Path(path)
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(results))


def _valid_result(r) -> bool:
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    return (isinstance(r, dict) and isinstance(r.get("image_id"), int) and isinstance(r.get("category_id"), int)
            and isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4 and all(number(v) for v in r["bbox"])
            and number(r.get("score")))


def load_results(path: str | os.PathLike) -> list[dict]:
    """A COCO results file, checked: a list of {image_id, category_id, bbox [x, y, w, h], score}."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise DatasetError(f"results file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"results file {path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(data, list):
        raise DatasetError(f"results file {path} is not a list of COCO detections")
    for i, r in enumerate(data):
        if not _valid_result(r):
            raise DatasetError(f"results file {path}: entry {i} is not a COCO detection "
                               "{image_id, category_id, bbox: [x, y, w, h], score}")
    return data


def match_file_names(results: list[dict], coco_set) -> list[dict]:
    """Results that name their image (`file_name`, as `rdet predict` writes them) get the set's id for that image,
    matched by base name; results without a file name keep their image_id. DatasetError when a named image is not
    in the set: the detections were made on other images."""
    if not any("file_name" in r for r in results):
        return results
    ids = {os.path.basename(coco_set.info(i)["file_name"]): i for i in coco_set.coco.getImgIds()}
    unknown = sorted({os.path.basename(str(r["file_name"])) for r in results if "file_name" in r}
                     - set(ids))
    if unknown:
        shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise DatasetError(f"{len(unknown)} image(s) of the results are not in {coco_set.ann_file.name}: {shown}")
    return [{**r, "image_id": ids[os.path.basename(str(r["file_name"]))]} if "file_name" in r else r
            for r in results]
