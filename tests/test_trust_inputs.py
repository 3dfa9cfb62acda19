"""Hostile and degenerate input data for predict, eval, train and bench: each gives one line naming the input
(predict skips it and goes on; eval, train and bench stop), never a traceback or a hang."""
import json

import cv2
import numpy as np
import pytest

from cli_inprocess import rdet_here
from retinanet.config import ModelConfig
from retinanet.data.coco import CocoSet
from retinanet.data.preprocess import planned_meta, rescale_size
from retinanet.errors import DatasetError, ImageError
from tiny_zoo import NAME, write_tiny_zoo

SMALL = ("--size", "128x96")  # a small test scale keeps each run to a few seconds on 2 cores


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, _ = write_tiny_zoo(root)
    return {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}


def _thin(path, w=10000, h=1):
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("random weights")]
    assert len(lines) == 1 and "Traceback" not in stderr and "unexpected" not in stderr, stderr
    return lines[0]


# --- an image too thin to resize: one rule, every pipeline -------------------------------------------------------

@pytest.mark.parametrize("w, h", [(10000, 1), (1, 10000), (3000, 1)])
def test_a_side_rounding_to_0_pixels_is_an_image_error_in_the_one_resize_rule(w, h):
    with pytest.raises(ImageError, match=rf"^{w}x{h} resizes to 0 pixels on a side: too thin to detect in"):
        rescale_size(w, h)
    with pytest.raises(ImageError, match="too thin"):
        planned_meta(h, w, ModelConfig(depth=18))
    assert rescale_size(1, 1) == (800, 800) and rescale_size(1333, 1) == (1333, 1)  # tiny but resizable


def test_predict_skips_a_too_thin_image_and_detects_the_others(tiny, tmp_path, capsys, monkeypatch):
    thin = _thin(tmp_path / "thin.png")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    r = rdet_here(capsys, monkeypatch, "predict", NAME, thin, good, "--json", "--out", tmp_path / "out", *SMALL,
                  env=tiny)
    assert r.returncode == 1
    assert _one_line(r.stderr) == f"skipped {thin}: 10000x1 resizes to 0 pixels on a side: too thin to detect in " \
                                  "(scale 128x96)"
    records = json.loads(r.stdout)["images"]
    assert "too thin" in records[0]["error"] and records[1]["error"] is None and records[1]["width"] == 64


def test_eval_train_and_bench_name_the_too_thin_file(tmp_path):
    from retinanet.benchmark.inputs import host_loader
    from retinanet.data.train_data import TrainSet
    from retinanet.evaluation.coco_eval import CocoImages

    cfg = ModelConfig(depth=18, num_classes=1)
    thin = _thin(tmp_path / "thin.png")
    tensor, error, image_id = CocoImages([thin], [5], cfg)[0]
    assert tensor is None and image_id == 5 and error.startswith(f"{thin}: 10000x1 resizes to 0 pixels")
    assert CocoImages([thin], [5], cfg, device_normalise=True)[0][1] == error
    with pytest.raises(ImageError, match=rf"^{thin}: 10000x1 resizes to 0 pixels"):
        host_loader(cfg, [thin])(0)

    doc = {"images": [{"id": 5, "file_name": "thin.png", "width": 10000, "height": 40}],
           "categories": [{"id": 1, "name": "a"}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 100, 1]}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"image id 5 \(thin.png\): 10000x40 resizes to 0 pixels"):
        TrainSet(CocoSet.load(tmp_path / "ann.json", tmp_path), ModelConfig(depth=18, num_classes=1, scale=(64, 64)))
    doc["images"][0].update(width=100, height=40)  # the annotation lies: the decoded image is caught when read
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    sample = TrainSet(CocoSet.load(tmp_path / "ann.json", tmp_path), cfg)[(0, False)]
    assert sample.image is None and sample.error.startswith(f"{thin}: 10000x1 resizes to 0 pixels")
