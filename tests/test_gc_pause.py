"""run_detection runs no full garbage collection inside its loop (each walked every object of torch, OpenCV and
the model: a ~0.2 s GPU stall per 500 images on an H200), and leaves the collector's thresholds as it found them."""
import gc

import pytest
import torch

from coco_data import write_annotations, write_images
from retinanet import CocoSet, Detector, ModelConfig
from retinanet.errors import DatasetError
from retinanet.evaluation.coco_eval import run_detection
from retinanet.gc_pause import no_full_collections


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("coco")
    ann = write_annotations(root / "ann.json", write_images(root / "img"), [(42, 3, [10, 10, 30, 30])])
    return Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu"), CocoSet.load(ann, root / "img")


def _full_collections_while(run) -> int:
    """Full collections the collector started by itself while `run(pile_up)` ran, with thresholds that make
    them frequent; pile_up() makes 200k long-lived containers (as eval's result dicts pile up)."""
    started, kept = [], []

    def spy(phase, info):
        if phase == "start" and info["generation"] == 2:
            started.append(info)

    def pile_up(*_):
        kept.extend([i] for i in range(200_000))

    thresholds = gc.get_threshold()
    gc.set_threshold(100, 2, 2)
    gc.callbacks.append(spy)
    try:
        run(pile_up)
    finally:
        gc.callbacks.remove(spy)
        gc.set_threshold(*thresholds)
    return len(started)


def test_no_full_collection_inside_detection_and_the_thresholds_come_back(tiny):
    det, coco = tiny
    assert _full_collections_while(lambda pile_up: pile_up()) > 0  # outside detection, the same pile sets them off
    before, seen = gc.get_threshold(), []

    def detect(pile_up):
        run_detection(det, coco, workers=0, progress=lambda n: (pile_up(), seen.append(gc.get_threshold())))

    assert _full_collections_while(detect) == 0
    assert len(seen) == 3 and all(t[2] > 1_000_000 for t in seen)
    assert gc.get_threshold() == before


def test_an_error_inside_restores_the_callers_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(500, 7, 3)
    try:
        with pytest.raises(DatasetError):
            with no_full_collections():
                assert gc.get_threshold()[:2] == (500, 7)
                raise DatasetError("a bad image")
        assert gc.get_threshold() == (500, 7, 3)
    finally:
        gc.set_threshold(*before)
