"""COCO box AP: a detector over a CocoSet (one shard per process under torchrun), scored by COCOeval (scorer.py).

    coco_set = CocoSet.load("coco/annotations/instances_val2017.json", "coco/val2017")
    results = run_detection(detector, coco_set, batch_size=1, workers=2)
    coco_metrics(coco_set, results)["bbox_mAP"]   # x101_32x4d_fpn_2x publishes 0.401

The results are COCO results dicts (image_id, category_id, bbox [x, y, w, h], score), label i scored as the
set's i-th smallest category id, as the reference's cat2label. Scoring and results files need no torch (re-scoring
saved detections starts fast); detection imports it on first use.
"""
from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Callable

from retinanet.atomic_write import write_text_atomically
from retinanet.data.coco import CocoSet, read_json_file
from retinanet.data.loader_workers import init_worker
from retinanet.errors import ArgumentError, DatasetError, ImageError, listed
from retinanet.evaluation.scorer import score_coco
from retinanet.gc_pause import no_full_collections
from retinanet.values import check_batch_size, check_path, check_whole, is_finite_number, is_whole, plain


# --- detection ---------------------------------------------------------------------------------------------


class CocoImages:
    """Image i decoded and pre-processed on the CPU, in a DataLoader worker: (tensor, ImageMeta, image_id).

    The tensor is the normalised float image, or with `device_normalise` the resized uint8 BGR image (a quarter
    of the bytes to pin and copy; the GPU normalises it), or with `device_resize` too the decoded uint8 image as
    it is (the GPU resizes it, data.device_resize: a COCO photo is about a quarter of the resized bytes again).
    A map-style dataset (DataLoader needs only __getitem__ and __len__). It holds paths, not the CocoSet, so
    that workers started by spawn do not copy the whole annotation index."""

    def __init__(self, paths: list[Path], image_ids: list[int], cfg, device_normalise: bool = False,
                 device_resize: bool = False):
        self.paths, self.image_ids, self.cfg = paths, image_ids, cfg
        self.device_normalise = device_normalise
        self.device_resize = device_normalise and device_resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        import torch

        from retinanet.data.images import read_bgr
        from retinanet.data.preprocess import planned_meta, prepare, resize_with_meta

        try:
            bgr = read_bgr(self.paths[i])
        except ImageError as e:
            # Returned, not raised: a worker's exception reaches the main process wrapped in a multi-line
            # traceback, and the user should see one line naming the file.
            return None, str(e), self.image_ids[i]
        try:
            if self.device_resize:
                return torch.from_numpy(bgr), planned_meta(*bgr.shape[:2], self.cfg), self.image_ids[i]
            if self.device_normalise:
                resized, meta = resize_with_meta(bgr, self.cfg)
                return torch.from_numpy(resized), meta, self.image_ids[i]
            tensor, meta = prepare(bgr, self.cfg, "cpu")
        except ImageError as e:  # decoded, but too thin to resize
            return None, f"{self.paths[i]}: {e}", self.image_ids[i]
        return tensor, meta, self.image_ids[i]


LOOKAHEAD = 2  # batches queued on the GPU while the host stores the oldest one's results and prepares the next


def same_size_order(coco_set: CocoSet, ids: list[int], cfg, batch_size: int) -> list[int]:
    """`ids` reordered so that consecutive runs of `batch_size` share a padded size where possible (from the
    annotation file's width and height; a wrong size there only costs batching, as batches are re-grouped by
    the decoded images' real sizes). Order within a size is kept; with batch 1 nothing moves."""
    from retinanet.data.preprocess import padded_size, rescale_size

    if batch_size <= 1:
        return list(ids)
    groups: dict[tuple, list[int]] = {}
    for i in ids:
        info = coco_set.info(i)
        try:
            w, h = rescale_size(int(info["width"]), int(info["height"]), cfg.scale)
            key = padded_size(h, w, cfg.size_divisor)
        except (KeyError, TypeError, ValueError, ImageError):  # the image itself is checked when read
            key = ()
        groups.setdefault(key, []).append(i)
    return [i for group in groups.values() for i in group]


def _keep_as_list(batch):
    return batch  # images differ in size: Detector.detect_prepared groups and pads them


# What a loader worker imports, imported once by the server it is forked from: each worker then starts without
# importing anything (about 25 ms a worker for the last four, more while eight workers share the cores).
WORKER_MODULES = ("torch", "cv2", "retinanet.evaluation.coco_eval", "retinanet.data.images",
                  "retinanet.data.preprocess", "retinanet.data.loader_workers", "retinanet.stop_signals")


def _worker_context():
    """Workers forked from a clean server process, not from this one: once this process has resized an image
    (a random-weights model calibrates on the bundled photo), OpenCV's thread pool is live here, and a plain
    fork can inherit its lock held, hanging the worker in its first OpenCV call. The server imports the
    loader's modules once, so each worker starts in milliseconds, unlike spawn."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None  # Windows: spawn, the default there, is clean anyway
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_MODULES))
    return ctx


def start_worker_server() -> None:
    """Start the server that loader workers are forked from now, without waiting for it: it imports torch and
    OpenCV (seconds) while the caller loads the model, instead of when run_detection first starts workers."""
    if _worker_context() is None:
        return
    from multiprocessing import forkserver

    try:
        forkserver.ensure_running()
    except OSError:  # only an early start: the loader starts it again, and says why it cannot
        pass


def check_classes(num_classes: int, coco_set: CocoSet) -> None:
    """Label i is scored as the set's i-th category, so the counts must agree."""
    if num_classes != len(coco_set.cat_ids):
        raise DatasetError(f"the model predicts {num_classes} classes but {coco_set.ann_file.name} has "
                           f"{len(coco_set.cat_ids)} categories: evaluate it on a set with the same classes")


def _loader(coco_set: CocoSet, ids: list[int], cfg, batch_size: int, workers: int, pin: bool,
            device_normalise: bool, device_resize: bool = False):
    """Batches of (tensor, ImageMeta, image_id) decoded and pre-processed by DataLoader workers."""
    from torch.utils.data import DataLoader

    dataset = CocoImages([coco_set.path(i) for i in ids], ids, cfg, device_normalise=device_normalise,
                         device_resize=device_resize)
    workers = min(workers, -(-len(ids) // max(1, batch_size)))  # a worker more than there are batches idles
    return DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False, num_workers=workers,
                      collate_fn=_keep_as_list, worker_init_fn=init_worker if workers else None, pin_memory=pin,
                      prefetch_factor=4 if workers else None,
                      multiprocessing_context=_worker_context() if workers else None)


def available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class DecodedImages:
    """Pre-processed images kept in memory across runs of one model configuration (the checkpoints of a training
    run): each is decoded once while they fit in `budget` bytes (default: half the memory available), the rest
    again on every run. Detections do not depend on which images share a batch, so the order is free."""

    def __init__(self, budget: int | None = None):
        if budget is not None:
            check_whole(budget, "budget", 0)  # 'x' failed at the first image kept; -1 kept none, silently
        self.budget = budget if budget is not None else (available_memory() or 4 << 30) // 2
        self.kept: dict[int, tuple] = {}
        self.used = 0
        self.key = None

    def batches(self, coco_set: CocoSet, ids: list[int], cfg, batch_size: int, workers: int, pin: bool,
                device_normalise: bool = False, device_resize: bool = False):
        key = (cfg.mean, cfg.std, cfg.to_rgb, cfg.scale, cfg.size_divisor, device_normalise, device_resize)
        if key != self.key:  # another pre-processing: nothing kept applies
            self.kept, self.used, self.key = {}, 0, key
        kept = [i for i in ids if i in self.kept]
        step = max(1, batch_size)
        for start in range(0, len(kept), step):
            yield [(*self.kept[i], i) for i in kept[start:start + step]]
        rest = [i for i in ids if i not in self.kept]
        if not rest:
            return
        for batch in _loader(coco_set, rest, cfg, batch_size, workers, pin, device_normalise, device_resize):
            for tensor, meta, image_id in batch:
                size = tensor.numel() * tensor.element_size() if tensor is not None else 0
                if tensor is not None and self.used + size <= self.budget:
                    self.kept[image_id] = (tensor, meta)
                    self.used += size
            yield batch


def run_detection(detector, coco_set: CocoSet, batch_size: int = 1, workers: int = 2,
                  progress: Callable[[int], None] | None = None, dist=None,
                  image_ids: list[int] | None = None, decoded: DecodedImages | None = None,
                  device_path: bool | None = None) -> list[dict]:
    """COCO results for `image_ids` (default: the set's), at the model's own score threshold (0.05).

    Under torchrun each process detects its shard of the images and rank 0 returns every result, in image order
    (the order a single process gives, so the AP is identical); other ranks return []. `progress(n)` is called
    after each batch with the number of images this process finished. `dist`: a DistInfo (default: one process).
    `decoded`: keep pre-processed images in memory for the next run (many checkpoints of one model).

    `device_path` (default: where Detector.device_path() gives one, i.e. on a GPU): loader workers decode (and
    resize, where the device path does not), the uint8 images are pinned and copied without waiting, resized and
    normalised on the device, batched by padded size, run through CUDA graphs with sync-free post-processing
    (inference.device_path), and each batch's results are read only after the next LOOKAHEAD batches are queued, so
    decoding, copying and the forward overlap. Same detections as the plain path.
    """
    from retinanet.distributed import DistInfo, gather_to_main, shard
    if not isinstance(coco_set, CocoSet):
        raise ArgumentError(f"coco_set must be a retinanet.CocoSet (CocoSet.load), not {type(coco_set).__name__}")
    if progress is not None and not callable(progress):
        raise ArgumentError(f"progress must be a function of the number of images done, not {progress!r}")
    dist = dist or DistInfo()
    check_batch_size(batch_size)  # 0 ran as 1 without a word; a NumPy integer failed in DataLoader
    check_whole(workers, "workers", 0)
    batch_size, workers = int(batch_size), int(workers)
    check_classes(detector.cfg.num_classes, coco_set)
    ids = coco_set.chosen_ids(image_ids)
    coco_set.check_resizable(detector.cfg.scale, ids)  # before any inference, not when the loader meets it
    use_path = detector.device_path() is not None if device_path is None else device_path
    path = None
    if use_path:
        from retinanet.inference.device_path import DevicePath

        path = detector.device_path() or DevicePath(detector)  # the latter: asked for where predict would not
    device_resize = path is not None and path.resize_on_device
    mine = same_size_order(coco_set, shard(ids, dist), detector.cfg, batch_size)
    pin = detector.device.type == "cuda"
    if decoded is not None:
        batches = decoded.batches(coco_set, mine, detector.cfg, batch_size, workers, pin, use_path, device_resize)
    else:
        batches = _loader(coco_set, mine, detector.cfg, batch_size, workers, pin, use_path, device_resize)
    cat_ids = tuple(coco_set.cat_ids)
    per_image: dict[int, list[dict]] = {}

    def store(batch, detections):
        for (_, _, image_id), dets in zip(batch, detections):
            per_image[image_id] = replace(dets, category_ids=cat_ids).to_coco(image_id)
        if progress is not None:
            progress(len(batch))

    in_flight: deque = deque()  # (batch, queued): read once LOOKAHEAD later batches are queued behind them

    def store_oldest():
        done, queued = in_flight.popleft()
        store(done, path.collect(queued))

    with no_full_collections():  # a full walk of the model's and libraries' objects stalls the GPU
        for batch in batches:
            for tensor, meta, _ in batch:
                if tensor is None:
                    raise DatasetError(meta)  # the ImageError's one line
            if path is None:
                prepared = [(t.to(detector.device, non_blocking=True), meta) for t, meta, _ in batch]
                store(batch, detector.detect_prepared(prepared, batch_size=len(batch)))
                continue
            in_flight.append((batch, path.queue([(path.device_part(path.upload(t), meta), meta)
                                                 for t, meta, _ in batch], batch_size=len(batch))))
            if len(in_flight) > LOOKAHEAD:
                store_oldest()
        while in_flight:
            store_oldest()
    parts = gather_to_main(per_image, dist)
    if not dist.is_main:
        return []
    merged = {k: v for part in parts for k, v in part.items()}
    return [r for image_id in ids for r in merged[image_id]]


# --- scoring -----------------------------------------------------------------------------------------------


def _check_ids(coco_set: CocoSet, results: list[dict]) -> None:
    """Detections on images or categories the set lacks mean they were made on another set (COCOeval would
    fail on the first and silently drop the second)."""
    for key, known, what in (("image_id", coco_set.coco.imgs, "image"), ("category_id", coco_set.coco.cats,
                                                                           "category")):
        unknown = sorted({r[key] for r in results} - set(known))
        if unknown:
            raise DatasetError(f"the detections name {len(unknown)} {what} id(s) that {coco_set.ann_file.name} "
                               f"lacks: {listed(unknown)} (were they made on another set?)")


def coco_metrics(coco_set: CocoSet, results: list[dict], image_ids: list[int] | None = None,
                 backend: str = "auto") -> dict[str, float]:
    """The 12 COCOeval bbox figures as fractions, by name (METRIC_NAMES), over `image_ids` (default: the set's,
    i.e. the first N under a limit). A figure is -1 where the images hold no ground truth of that size, as
    COCOeval (and the reference's log) gives it. `backend`: see scorer.score_coco."""
    return score_set(coco_set, results, image_ids, backend).stats


def score_set(coco_set: CocoSet, results: list[dict], image_ids: list[int] | None = None,
              backend: str = "auto"):
    """scorer.CocoScores of `results` on a CocoSet (figures, per-class precision and recall arrays), the ids
    checked first."""
    results = _checked_results(results)
    _check_ids(coco_set, results)
    ids = coco_set.chosen_ids(image_ids)
    return score_coco(coco_set.coco.dataset, results, ids, coco_set.cat_ids, backend=backend)


# --- results files -----------------------------------------------------------------------------------------


def save_results(path: str | os.PathLike, results: list[dict]) -> None:
    """COCO results JSON, written atomically (a crash never leaves half a file); `results` are checked as
    load_results checks them, so that the file reads back (NumPy numbers are written as numbers)."""
    check_path(path, "path")
    results = _checked_results(results)
    path = Path(path)
    if path.is_dir():
        raise ArgumentError(f"cannot write the results to {path}: it is a directory (give a file name)")
    if path.parent != Path():
        path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(results, default=_json_number))


def _json_number(value):
    """json.dumps's fallback: NumPy integers and floats (a caller's own results) as Python's."""
    number = plain(value)
    if number is value:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return number


def _checked_results(results) -> list[dict]:
    """`results` as a list, DatasetError naming the first entry that is no COCO detection (a missing key failed
    as a KeyError, a NaN score or negative width was ranked or matched as if it meant something)."""
    if isinstance(results, (str, bytes, dict)) or not isinstance(results, Iterable):
        raise ArgumentError(f"results must be a list of COCO detections, not {type(results).__name__}")
    results = list(results)
    bad = _first_invalid(results)
    if bad is not None:
        raise DatasetError(f"results entry {bad} is not a COCO detection {RESULT_FORM}: {results[bad]!r:.120}")
    return results


RESULT_FORM = "{image_id, category_id, bbox: [x, y, w >= 0, h >= 0], score}"


def _first_invalid(results: list) -> int | None:
    """The index of the first entry that is no COCO detection (_valid_result), None when all are."""
    return next((i for i, r in enumerate(results) if not _valid_result(r)), None)


def _valid_result(r) -> bool:
    """Scores may be any finite number (COCOeval only ranks them); a box's width and height not negative (its IoU
    would be meaningless); ids integers, not true/false (which Python counts as 1 and 0)."""
    return (isinstance(r, dict) and is_whole(r.get("image_id")) and is_whole(r.get("category_id"))
            and isinstance(r.get("bbox"), list) and len(r["bbox"]) == 4
            and all(is_finite_number(v) for v in r["bbox"]) and min(r["bbox"][2:]) >= 0
            and is_finite_number(r.get("score")))


def load_results(path: str | os.PathLike) -> list[dict]:
    """A COCO results file, checked: a list of {image_id, category_id, bbox [x, y, w, h], score}."""
    check_path(path, "path")
    path = Path(path)
    data = read_json_file(path, "results file")
    if not isinstance(data, list):
        raise DatasetError(f"results file {path} is not a list of COCO detections")
    bad = _first_invalid(data)
    if bad is not None:
        raise DatasetError(f"results file {path}: entry {bad} is not a COCO detection {RESULT_FORM}")
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
        raise DatasetError(f"{len(unknown)} image(s) of the results are not in {coco_set.ann_file.name}: "
                           f"{listed(unknown)}")
    return [{**r, "image_id": ids[os.path.basename(str(r["file_name"]))]} if "file_name" in r else r
            for r in results]
