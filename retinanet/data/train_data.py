"""The training data pipeline of MMDetection v2.0 (facts sheet 5, training part), deterministic per epoch.

Kept images: those with at least one annotation (crowd ones count, as in the reference's filter_empty_gt) and a
short side of at least 32 pixels. Each image is read with OpenCV, resized keeping its ratio to fit the scale (boxes
scaled by the separate width/height factors and clipped to the resized image, those clipped to nothing dropped
as from v2.2 on), flipped horizontally with probability 0.5, normalised, and zero-padded with the rest of its batch.

Batches come from GroupedBatches: the two aspect groups (w/h > 1 or not) are shuffled separately, padded by
repetition to whole global batches, cut into per-device batches and those shuffled, as the reference's
(Distributed)GroupSampler does. The order and the flips are a pure function of (seed, epoch, batch sizes), so a
run interrupted mid-epoch resumes on exactly the batches it had not seen yet.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from retinanet.config import ModelConfig
from retinanet.errors import DatasetError, ImageError
from retinanet.data.images import read_bgr
from retinanet.data.loader_workers import init_worker
from retinanet.data.preprocess import collate, normalize, resize

MIN_SIDE = 32
FLIP_RATIO = 0.5


def trainable_ids(coco_set) -> list[int]:
    """The image ids the reference trains on, in the set's (sorted) order."""
    keep = []
    for image_id in coco_set.image_ids:
        info = coco_set.info(image_id)
        w, h = info.get("width"), info.get("height")
        if coco_set.has_annotations(image_id) and (not w or not h or min(w, h) >= MIN_SIDE):
            keep.append(image_id)
    return keep


@dataclass
class Sample:
    image: torch.Tensor | None  # (3, h, w) normalised, unpadded
    boxes: torch.Tensor  # (n, 4) xyxy in resized (and flipped) pixels
    labels: torch.Tensor  # (n,) int64
    img_shape: tuple[int, int]
    error: str | None = None  # an unreadable image: reported by the trainer in the main process, in one line


class TrainSet(torch.utils.data.Dataset):
    """Indexed by (position, flip) pairs, which GroupedBatches yields. It keeps only paths, sizes and boxes, not
    the annotation index, so that data-loading workers (forked or spawned) stay small."""

    def __init__(self, coco_set, cfg: ModelConfig, ids: list[int] | None = None):
        self.cfg = cfg
        self.ids = trainable_ids(coco_set) if ids is None else ids
        if not self.ids:
            raise DatasetError(f"{getattr(coco_set, 'ann_file', 'the dataset')}: no image has an annotation (and a "
                               f"side of at least {MIN_SIDE} px): nothing to train on")
        self.paths = [coco_set.path(i) for i in self.ids]
        self.targets = [coco_set.annotations(i) for i in self.ids]
        infos = [coco_set.info(i) for i in self.ids]
        if not any(_box_inside(boxes, info.get("width"), info.get("height"))
                   for (boxes, _), info in zip(self.targets, infos)):  # by the rule __getitem__ applies
            raise DatasetError(f"{getattr(coco_set, 'ann_file', 'the dataset')}: no box lies inside its image (by "
                               "the annotated sizes), and boxes outside are dropped: nothing to train on")
        self.sizes = [(info.get("width") or 1, info.get("height") or 1) for info in infos]
        coco_set.check_resizable(cfg.scale, self.ids)  # refused before training starts, not hours into it

    def __len__(self) -> int:
        return len(self.ids)

    def aspect_groups(self) -> np.ndarray:
        """1 for landscape images (w / h > 1), else 0: the reference's group flag."""
        return np.asarray([1 if w / h > 1 else 0 for w, h in self.sizes], np.int64)

    def __getitem__(self, item: tuple[int, bool]) -> Sample:
        index, flip = item
        boxes, labels = self.targets[index]
        try:
            img = read_bgr(self.paths[index])
        except ImageError as e:
            return _unusable(str(e))
        try:
            img, (w_scale, h_scale) = resize(img, self.cfg.scale)
        except ImageError as e:  # decoded, but too thin to resize (its annotated size said otherwise)
            return _unusable(f"{self.paths[index]}: {e}")
        h, w = img.shape[:2]
        boxes, inside = clipped(boxes * np.array([w_scale, h_scale, w_scale, h_scale], np.float32), w, h)
        boxes, labels = boxes[inside], labels[inside]
        if flip:
            img = img[:, ::-1]
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        tensor = normalize(np.ascontiguousarray(img), self.cfg)
        return Sample(tensor, torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
                      torch.from_numpy(labels), (h, w))


def clipped(boxes: np.ndarray, width, height) -> tuple[np.ndarray, np.ndarray]:
    """(xyxy boxes clipped to a width x height image, which of them keep some area). A box wholly outside is
    clipped to nothing, and its regression target log(0 / anchor) would make the loss infinite: v2.0 trains on it
    anyway; v2.2 drops such boxes, and so do we."""
    boxes = boxes.copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes, (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _box_inside(boxes: np.ndarray, width, height) -> bool:
    """Whether one of an image's boxes survives clipped() (an image without an annotated size is taken at its
    word)."""
    if not len(boxes) or not width or not height:
        return bool(len(boxes))
    return bool(clipped(boxes, width, height)[1].any())


def _unusable(error: str) -> Sample:
    return Sample(None, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), (0, 0), error)


@dataclass
class Batch:
    images: torch.Tensor  # (B, 3, H, W)
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    img_shapes: list[tuple[int, int]]
    error: str | None = None

    def pin_memory(self) -> "Batch":  # DataLoader(pin_memory=True) calls this on custom batch types
        return Batch(self.images.pin_memory(), self.boxes, self.labels, self.img_shapes, self.error)

    def to(self, device) -> "Batch":
        return Batch(self.images.to(device, non_blocking=True), [b.to(device) for b in self.boxes],
                     [lab.to(device) for lab in self.labels], self.img_shapes, self.error)


def make_collate(size_divisor: int):
    def collate_samples(samples: list[Sample]) -> Batch:
        bad = next((s.error for s in samples if s.error), None)
        if bad:
            return Batch(torch.zeros(0), [], [], [], bad)
        return Batch(collate([s.image for s in samples], size_divisor), [s.boxes for s in samples],
                     [s.labels for s in samples], [s.img_shape for s in samples])
    return collate_samples


class GroupedBatches:
    """Per-device batches of (index, flip) pairs for one rank; `set_epoch` picks the epoch's order and
    `start` skips the batches an interrupted run has already trained on."""

    def __init__(self, groups: np.ndarray, batch_size: int, rank: int = 0, world_size: int = 1, seed: int = 0,
                 flip_ratio: float = FLIP_RATIO):
        self.groups, self.batch_size = np.asarray(groups), batch_size
        self.rank, self.world_size, self.seed, self.flip_ratio = rank, world_size, seed, flip_ratio
        self.epoch, self.start = 0, 0
        step = batch_size * world_size
        sizes = [int((self.groups == g).sum()) for g in np.unique(self.groups)]
        self.steps_per_epoch = sum(-(-n // step) for n in sizes)  # per-device batches each rank gets

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, bool]]]:
        """Every device batch of the epoch, in step order: step k is batches [k*W, (k+1)*W), one per rank."""
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        step = self.batch_size * self.world_size
        chunks = []
        for group in np.unique(self.groups):
            members = np.flatnonzero(self.groups == group)
            members = members[torch.randperm(len(members), generator=g).numpy()]
            padded = -(-len(members) // step) * step
            members = np.resize(members, padded)  # repeats from the start of the shuffled group
            chunks += [members[i:i + self.batch_size] for i in range(0, padded, self.batch_size)]
        order = torch.randperm(len(chunks), generator=g).tolist()
        flips = (torch.rand(len(chunks), self.batch_size, generator=g) < self.flip_ratio).tolist()
        return [[(int(i), bool(f)) for i, f in zip(chunks[c], flips[k])] for k, c in enumerate(order)]

    def __iter__(self):
        batches = self.epoch_batches(self.epoch)
        for k in range(self.start, self.steps_per_epoch):
            yield batches[k * self.world_size + self.rank]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start


def loader(train_set: TrainSet, batches: GroupedBatches, workers: int, pin_memory: bool = False):
    return torch.utils.data.DataLoader(train_set, batch_sampler=batches, num_workers=workers,
                                       collate_fn=make_collate(train_set.cfg.size_divisor), pin_memory=pin_memory,
                                       worker_init_fn=init_worker if workers else None,
                                       persistent_workers=False)
