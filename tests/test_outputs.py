"""What predict writes (#17 finding 4): one schema, --classes, --save-crops, and a COCO results file that
`rdet eval --results` reads back, matched to the set's images by file name."""
import json

import pytest
from PIL import Image

from cli_inprocess import rdet_here
from coco_data import write_annotations, write_images
from tiny_zoo import CLASSES, NAME, write_tiny_zoo

SMALL = ("--size", "128x96")
CATEGORIES = tuple((i + 1, name) for i, name in enumerate(CLASSES))  # the ids predict gives a model's own classes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, _ = write_tiny_zoo(root)
    records = write_images(root / "images")
    return root, {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}, records


def test_coco_results_of_predict_are_read_back_by_eval(tiny, tmp_path, capsys, monkeypatch):
    root, env, records = tiny
    out = tmp_path / "out"
    r = rdet_here(capsys, monkeypatch, "predict", NAME, root / "images", "--out", out, "-q", *SMALL, env=env)
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "coco_results.json").read_text())
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(results) == sum(len(p["detections"]) for p in predictions["images"]) > 0
    # ground truth made of the detections themselves, under the set's own (unordered, sparse) image ids
    by_name = {rec["file_name"]: rec["id"] for rec in records}
    boxes = [(by_name[res["file_name"].rsplit("/", 1)[-1]], res["category_id"], res["bbox"]) for res in results
             if res["score"] > 0.5]
    ann = write_annotations(tmp_path / "gt.json", records, boxes, CATEGORIES)
    r = rdet_here(capsys, monkeypatch, "eval", "--results", out / "coco_results.json", "--ann", ann, "--images",
                  root / "images", "--json", env=env)
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout)["metrics"]
    assert metrics["bbox_mAP"] > 0.5  # every ground-truth box is among the detections: matched by file name
    other = tmp_path / "other.json"
    write_annotations(other, [{**records[0], "file_name": "elsewhere.jpg"}], [], CATEGORIES)
    r = rdet_here(capsys, monkeypatch, "eval", "--results", out / "coco_results.json", "--ann", other, "--images",
                  root / "images", env=env)
    assert r.returncode == 2 and "not in other.json" in r.stderr


def test_classes_filter_and_crops(tiny, tmp_path, capsys, monkeypatch):
    root, env, records = tiny
    image = root / "images" / records[0]["file_name"]
    r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--json", *SMALL, env=env)
    every = json.loads(r.stdout)["images"][0]["detections"]
    kept_class = every[0]["class"]
    out = tmp_path / "out"
    r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--json", "--classes", kept_class, "--out", out,
                  "--save-crops", *SMALL, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["classes"] == [kept_class]
    assert doc["images"][0]["detections"] == [d for d in every if d["class"] == kept_class]
    crops = sorted((out / "crops" / kept_class).iterdir())
    assert len(crops) == len([d for d in every if d["class"] == kept_class
                              and d["bbox"][2] - d["bbox"][0] > 0 and d["bbox"][3] - d["bbox"][1] > 0])
    with Image.open(crops[0]) as im:
        assert im.size[0] >= 1
    label = CLASSES.index(kept_class)  # 0-based labels work too
    r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--json", "--classes", str(label), *SMALL, env=env)
    assert json.loads(r.stdout)["images"][0]["detections"] == doc["images"][0]["detections"]


@pytest.mark.parametrize("command", ["eval --csv", "bench --plot"])
@pytest.mark.parametrize("target", ["pipe", "link", "dangling link"])
def test_an_output_file_that_is_a_pipe_or_a_link_is_written_into_not_replaced(tiny, tmp_path, capsys, monkeypatch,
                                                                               command, target):
    """A hunt's finding: outputs were written beside and renamed over the path given, so --csv /dev/null (as
    root) turned /dev/null into a plain file, a FIFO became a plain file its reader never saw, and a symbolic
    link was replaced by a file; bench --plot on a pipe or a dangling link ended in 'unexpected ...' (exit 70)
    after the whole bench. (/dev/null itself is not used here: before the fix this test would replace it.)"""
    import os
    import stat
    import threading

    root, env, records = tiny
    suffix = ".csv" if command == "eval --csv" else ".png"
    given = tmp_path / f"given{suffix}"
    written = tmp_path / "linked" / f"target{suffix}"  # where a link points (its directory made by rdet)
    received = []
    if target == "pipe":
        os.mkfifo(given)
        reader = threading.Thread(target=lambda: received.append(given.read_bytes()), daemon=True)
        reader.start()
    else:
        written.parent.mkdir()
        if target == "link":
            written.write_text("the user's old file")
        else:
            written.parent.rmdir()
        given.symlink_to(written)
    if command == "eval --csv":
        ann = write_annotations(tmp_path / "ann.json", records, [(42, 3, [1, 1, 20, 20])])
        results = tmp_path / "results.json"
        results.write_text(json.dumps([{"image_id": 42, "category_id": 3, "bbox": [1, 1, 20, 20], "score": 0.9}]))
        args = ["eval", "--results", results, "--ann", ann, "--csv", given, "-q"]
    else:
        args = ["bench", NAME, "--fps", "--random-weights", "--device", "cpu", "--num-images", "2", "--warmup",
                "0", "--size", "64x64", "--plot", given, "-q"]
    r = rdet_here(capsys, monkeypatch, *args, env=env)
    assert r.returncode == 0, r.stderr
    if target == "pipe":
        reader.join(10)
        assert stat.S_ISFIFO(os.lstat(given).st_mode) and received, "the pipe was replaced, or got nothing"
        data = received[0]
    else:
        assert given.is_symlink() and written.is_file()
        data = written.read_bytes()
    assert data.startswith(b"category_id,name," if command == "eval --csv" else b"\x89PNG"), data[:20]


@pytest.mark.parametrize("command", ["export --out", "eval --out", "bench --plot"])
def test_an_output_that_links_to_the_checkpoint_read_is_refused_before_work(tiny, tmp_path, capsys, monkeypatch,
                                                                            command):
    """Outputs are written through a link (above), so export, eval and bench check it against every file they
    read, --weights included: a link to the checkpoint would have had the export, the detections or the chart
    written over it."""
    import hashlib

    root, env, records = tiny
    weights = tmp_path / "mine.pth"
    weights.write_bytes(next(root.glob("*.pth")).read_bytes())  # the tiny zoo's checkpoint, a copy of the user's
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    suffix = {"export --out": ".onnx", "eval --out": ".json", "bench --plot": ".png"}[command]
    link = tmp_path / f"out{suffix}"
    link.symlink_to(weights)
    quick = ["--weights", weights, "--device", "cpu", "-q"]
    if command == "export --out":
        args = ["export", NAME, "--out", link, "--size", "64x64", *quick]
    elif command == "eval --out":
        ann = write_annotations(tmp_path / "ann.json", records, [(42, 3, [1, 1, 20, 20])])
        args = ["eval", NAME, "--ann", ann, "--images", root / "images", "--out", link, *quick]
    else:
        args = ["bench", NAME, "--fps", "--num-images", "2", "--size", "64x64", "--plot", link, *quick]
    r = rdet_here(capsys, monkeypatch, *args, env=env)
    assert r.returncode == 2 and "would destroy" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == before
