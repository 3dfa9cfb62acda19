"""run_detection keeps the objects alive before it out of full garbage collections while it runs (a ~0.2 s GPU
stall per 500 images before), and leaves the collector as it found it, a caller's own gc.freeze included."""
import gc

import pytest
import torch

from coco_data import write_annotations, write_images
from retinanet import CocoSet, Detector, ModelConfig
from retinanet.errors import DatasetError
from retinanet.evaluation.coco_eval import run_detection
from retinanet.frozen_heap import frozen_heap


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("coco")
    ann = write_annotations(root / "ann.json", write_images(root / "img"), [(42, 3, [10, 10, 30, 30])])
    return Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu"), CocoSet.load(ann, root / "img")


def _frozen_while_detecting(det, coco) -> list[int]:
    seen = []
    run_detection(det, coco, workers=0, progress=lambda n: seen.append(gc.get_freeze_count()))
    return seen


def test_the_heap_is_frozen_during_detection_and_thawed_after(tiny):
    assert gc.get_freeze_count() == 0
    seen = _frozen_while_detecting(*tiny)
    assert seen and min(seen) > 1000  # the model's and libraries' objects, at every image
    assert gc.get_freeze_count() == 0


def test_a_callers_own_freeze_and_a_disabled_collector_are_left_alone(tiny):
    gc.freeze()
    try:
        before = gc.get_freeze_count()
        _frozen_while_detecting(*tiny)
        assert gc.get_freeze_count() >= before  # not undone by run_detection
    finally:
        gc.unfreeze()
    gc.disable()
    try:
        assert set(_frozen_while_detecting(*tiny)) == {0} and not gc.isenabled()
    finally:
        gc.enable()


def test_an_error_inside_thaws_the_heap():
    with pytest.raises(DatasetError):
        with frozen_heap():
            assert gc.get_freeze_count() > 0
            raise DatasetError("a bad image")
    assert gc.get_freeze_count() == 0
