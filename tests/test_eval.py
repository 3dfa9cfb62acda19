"""`rdet eval`: COCO box AP of a model on a small COCO-format set, in-process, as a user runs it, and under torchrun.

The ground truth is built from a tiny18 model's own detections (score >= 0.3) on real image files, so its AP is
known exactly (1.0); scoring is checked against figures worked out by hand on boxes placed by hand.

Every process here computes with one thread (torchrun's default): a different thread count changes convolution
sums in the last bit, and 1-process and 2-process runs are compared for exact equality.
"""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from coco_data import CAT_IDS, IMAGES, boxes_from_results, write_annotations, write_calm_weights, write_images
from retinanet.data.coco import CocoSet
from retinanet.evaluation.analysis import class_figures
from retinanet.evaluation.coco_eval import (WORKER_MODULES, DecodedImages, _worker_context, coco_metrics,
                                          load_results, run_detection, save_results, score_set,
                                          start_worker_server)
from retinanet.evaluation.per_class import class_mean
from retinanet.evaluation.scorer import METRIC_NAMES, available_backends
from retinanet.errors import DatasetError
from tiny_zoo import NAME, free_port, rdet_command, run_rdet, write_tiny_zoo, zoo_row

SORTED_IDS = sorted(i for i, *_ in IMAGES)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Images, the tiny18 zoo with calm weights, the model's detections (run in-process, 2 loader workers), and
    two ground truths made of its detections scoring >= 0.3: all of them, and every other one."""
    import zoo

    root = tmp_path_factory.mktemp("eval")
    manifest, _ = write_tiny_zoo(root / "zoo")
    weights = write_calm_weights(root / "calm.pth")
    records = write_images(root / "images")
    bare = write_annotations(root / "bare.json", records, [])
    det = zoo.load(NAME, weights=weights, zoo_file=manifest, device="cpu")
    done = []
    results = run_detection(det, CocoSet.load(bare, root / "images"), batch_size=2, workers=2,
                            progress=done.append)
    confident = [r for r in results if r["score"] >= 0.3]
    assert len(confident) > 10
    write_annotations(root / "all.json", records, boxes_from_results(confident))
    write_annotations(root / "half.json", records, boxes_from_results(confident, lambda i: i % 2 == 0))
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    return {"root": root, "det": det, "results": results, "progress": done, "env": env, "weights": weights}


def _set(data, name, **kw):
    return CocoSet.load(data["root"] / name, data["root"] / "images", **kw)


# --- the engine, from Python ---------------------------------------------------------------------------------


def test_detections_are_coco_results_in_image_order_with_the_sets_category_ids(data):
    results, det = data["results"], data["det"]
    assert sum(data["progress"]) == len(IMAGES)
    ids = [r["image_id"] for r in results]
    assert sorted(set(ids)) == SORTED_IDS and ids == sorted(ids)  # every image, in the set's (id) order
    # image 7 is a.png: the same detections as predict() on the file, label i as the i-th smallest category id
    dets = det.predict(str(data["root"] / "images" / "a.png"))[0]
    mine = [r for r in results if r["image_id"] == 7]
    assert len(mine) == len(dets) > 0
    for r, box, score, label in zip(mine, dets.boxes, dets.scores, dets.labels):
        x1, y1, x2, y2 = box.tolist()  # float32 corners as Python floats, then subtracted (reference xyxy2xywh)
        assert r["bbox"] == [x1, y1, x2 - x1, y2 - y1]  # xywh, w = x2 - x1 (no +1)
        assert r["category_id"] == CAT_IDS[label] and r["score"] == float(score)


def test_ground_truth_equal_to_the_detections_scores_ap_1(data):
    m = coco_metrics(_set(data, "all.json"), data["results"])
    assert list(m) == list(METRIC_NAMES)
    assert m["bbox_mAP"] == m["bbox_mAP_50"] == m["bbox_mAP_75"] == m["AR_100"] == 1.0
    assert m["bbox_mAP_l"] == -1.0  # no box of 96x96 px or more in these small images: COCOeval's -1
    half = coco_metrics(_set(data, "half.json"), data["results"])
    assert 0.2 < half["bbox_mAP"] < 0.9  # the other half are false positives among true ones
    # --limit: only the first 2 images (by id) count
    limited = _set(data, "half.json", limit=2)
    assert limited.image_ids == SORTED_IDS[:2]
    assert coco_metrics(limited, data["results"]) == coco_metrics(_set(data, "half.json"), data["results"],
                                                                  image_ids=SORTED_IDS[:2])


# Boxes placed by hand: 40x40 (medium), one per category in each of two images (160x120 and 96x128).
HAND_GT = [(42, 3, [10, 10, 40, 40]), (42, 7, [60, 10, 40, 40]), (42, 12, [110, 60, 40, 40]),
           (1000, 3, [5, 5, 40, 40]), (1000, 7, [50, 40, 40, 40]), (1000, 12, [5, 85, 40, 40])]


def _dets(boxes, dx=0, score=0.9):
    return [{"image_id": i, "category_id": c, "bbox": [x + dx, y, w, h], "score": score} for i, c, (x, y, w, h) in boxes]


@pytest.fixture(scope="module")
def hand_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    records = [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in IMAGES]
    ann = write_annotations(root / "hand.json", records, HAND_GT)
    return CocoSet.load(ann, root, check_files=False)


@pytest.mark.parametrize("dets, expected", [
    # exact boxes: every figure 1 (no small or large ground truth: -1)
    (_dets(HAND_GT), {"bbox_mAP": 1.0, "bbox_mAP_75": 1.0, "bbox_mAP_m": 1.0, "bbox_mAP_s": -1.0, "AR_1": 1.0}),
    # shifted 6 px: IoU 34/46 = 0.739 passes 0.50..0.70, fails 0.75..0.95: 5 of 10 thresholds
    (_dets(HAND_GT, dx=6), {"bbox_mAP": 0.5, "bbox_mAP_50": 1.0, "bbox_mAP_75": 0.0, "AR_100": 0.5}),
    # shifted 4 px: IoU 36/44 = 0.818 passes 7 of 10
    (_dets(HAND_GT, dx=4), {"bbox_mAP": 0.7, "bbox_mAP_75": 1.0, "AR_10": 0.7}),
    # one image's boxes found, the other's missed: recall 0.5 at precision 1 covers 51 of the 101 recall points
    (_dets(HAND_GT[:3]), {"bbox_mAP": 51 / 101, "AR_100": 0.5}),
    # a false positive of category 3 scored above its two true ones: its precision envelope is 2/3 at every
    # recall, the other two categories stay 1: mean (2/3 + 1 + 1) / 3
    (_dets(HAND_GT, score=0.5) + [{"image_id": 42, "category_id": 3, "bbox": [100, 0, 40, 40], "score": 0.9}],
     {"bbox_mAP": 8 / 9, "AR_100": 1.0}),
    # no detections at all (COCO.loadRes cannot load an empty list): AP 0
    ([], {"bbox_mAP": 0.0, "bbox_mAP_50": 0.0, "AR_100": 0.0, "bbox_mAP_s": -1.0}),
])
def test_scoring_matches_figures_worked_out_by_hand(hand_set, dets, expected):
    m = coco_metrics(hand_set, dets)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, abs=1e-9), key


def test_results_files_round_trip_and_bad_ones_are_one_line_errors(hand_set, tmp_path):
    dets = _dets(HAND_GT, dx=6)
    save_results(tmp_path / "sub" / "r.json", dets)
    assert load_results(tmp_path / "sub" / "r.json") == dets
    bad = {"missing.json": None, "broken.json": "[{", "dict.json": "{}",
           "nobox.json": json.dumps([{"image_id": 42, "category_id": 3, "score": 0.5}]),
           # a sweep's findings: a negative width, and true as an image id, were scored
           "negative.json": json.dumps([{"image_id": 42, "category_id": 3, "bbox": [5, 5, -3, 4], "score": 0.5}]),
           "bool.json": json.dumps([{"image_id": True, "category_id": 3, "bbox": [5, 5, 3, 4], "score": 0.5}])}
    for name, text in bad.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(DatasetError) as info:
            load_results(tmp_path / name)
        assert name in str(info.value) and "\n" not in str(info.value)
    for wrong in ({"image_id": 5}, {"category_id": 1}):  # made on another set
        with pytest.raises(DatasetError, match="lacks"):
            coco_metrics(hand_set, [{**dets[0], **wrong}])


# --- the test sets: per-class figures against the overall ones, and the two scorers --------------------------

BACKENDS = available_backends()


@pytest.mark.parametrize("ann", ["all.json", "half.json"])
def test_per_class_figures_average_to_the_overall_ones_exactly(data, ann):
    coco_set = _set(data, ann)
    for backend in BACKENDS:
        scores = score_set(coco_set, data["results"], backend=backend)
        rows = class_figures(coco_set, scores)
        assert sum(r.gt for r in rows) == len(coco_set.coco.anns)
        for field, metric in (("ap", "bbox_mAP"), ("ap50", "bbox_mAP_50"), ("ap75", "bbox_mAP_75"),
                              ("ar100", "AR_100")):
            assert class_mean(rows, field) == scores.stats[metric], (backend, field)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="faster-coco-eval is not installed")
def test_faster_coco_eval_and_pycocotools_agree_on_the_test_sets(data, hand_set):
    sets = [(_set(data, "all.json"), data["results"]), (_set(data, "half.json"), data["results"]),
            (hand_set, _dets(HAND_GT, dx=6)), (hand_set, _dets(HAND_GT[:3])), (hand_set, [])]
    for coco_set, results in sets:
        fast, slow = (score_set(coco_set, results, backend=b) for b in ("faster-coco-eval", "pycocotools"))
        assert list(fast.stats) == list(METRIC_NAMES)
        for name in METRIC_NAMES:
            assert fast.stats[name] == pytest.approx(slow.stats[name], abs=1e-12), name
        assert np.allclose(fast.precision, slow.precision, atol=1e-12, rtol=0)
        assert np.allclose(fast.recall, slow.recall, atol=1e-12, rtol=0)


# --- rdet eval, as a user runs it ----------------------------------------------------------------------------


def _eval_args(data, ann="half.json"):
    return ["eval", NAME, "--ann", data["root"] / ann, "--images", data["root"] / "images", "--weights",
            data["weights"]]


@pytest.fixture(scope="module")
def cli_run(data):
    """One `rdet eval --json --out` run, shared by the checks below."""
    out = data["root"] / "r1.json"
    r = run_rdet(*_eval_args(data), "--json", "--out", out, "--batch-size", "2", "--workers", "1",
                 env_extra=data["env"])
    assert r.returncode == 0, r.stderr
    return r, out


def test_eval_json_is_exactly_the_documented_schema_and_matches_the_engine(data, cli_run):
    r, out = cli_run
    doc = json.loads(r.stdout)  # stdout holds the JSON document and nothing else
    assert list(doc) == ["model", "images", "metrics", "published_box_ap", "provenance"]
    assert doc["model"] == NAME and doc["images"] == len(IMAGES) and doc["published_box_ap"] == 0.125
    assert list(doc["metrics"]) == list(METRIC_NAMES)
    assert doc["metrics"] == coco_metrics(_set(data, "half.json"), data["results"])
    prov = doc["provenance"]  # what produced these figures
    assert prov["model"] == NAME and prov["zoo_entry"]["name"] == NAME and prov["weights"] == str(data["weights"])
    assert prov["weights_sha256"] == hashlib.sha256(data["weights"].read_bytes()).hexdigest()
    assert prov["annotations_sha256"] == hashlib.sha256((data["root"] / "half.json").read_bytes()).hexdigest()
    assert (prov["device"], prov["precision"], prov["test_scale"], prov["images"]) == ("cpu", "fp32", [1333, 800], 3)
    assert set(prov["versions"]) >= {"torch", "torchvision", "opencv"} and prov["rdet_version"]
    assert load_results(out) == data["results"]  # --out: the COCO results, as detected in-process


def test_rescoring_saved_results_equals_the_direct_run_and_limit_is_said(data, cli_run):
    r, out = cli_run
    again = run_rdet("eval", "--results", out, "--ann", data["root"] / "half.json", "--json", env_extra=data["env"])
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["metrics"] == json.loads(r.stdout)["metrics"] and doc["model"] is None
    assert doc["published_box_ap"] is None
    # the table, with the published figure beside the measured one, over the first 2 images only
    table = run_rdet("eval", NAME, "--results", out, "--ann", data["root"] / "all.json", "--limit", "2",
                     env_extra=data["env"])
    assert table.returncode == 0, table.stderr
    assert "first 2 of 3 images" in table.stdout and "--limit 2" in table.stderr
    row = next(line for line in table.stdout.splitlines() if "bbox_mAP " in line)
    assert "100.0" in row and "12.5" in row and "+87.5" in row  # measured, published, difference


def test_two_torchrun_processes_give_exactly_the_ap_of_one(data, cli_run):
    r, out = cli_run
    out2 = data["root"] / "r2.json"
    rdet = rdet_command()
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
              str(free_port())]
    launch += ["-m", "cli.main"] if rdet[0] == sys.executable else [rdet[0]]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDET_")} | data["env"]
    two = subprocess.run(launch + [str(a) for a in _eval_args(data)] + ["--json", "--out", str(out2)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout) == json.loads(r.stdout)  # one JSON document: rank 1 printed nothing
    assert load_results(out2) == load_results(out)  # rank 0 gathered every shard, in image order


# --- many checkpoints, and the whole zoo against its published table -----------------------------------------


@pytest.mark.parametrize("images, batch_size, workers, started", [(3, 1, 256, 3), (3, 2, 8, 2), (3, 1, 2, 2),
                                                                    (3, 4, 0, 0)])
def test_no_more_loader_workers_start_than_there_are_batches(data, images, batch_size, workers, started):
    """A hunt's finding: `rdet eval --workers 256` on 3 images started 256 processes (30 s on 2 cores, and
    torch's 'excessive worker creation' warning twice); a worker beyond the number of batches has nothing to do."""
    from retinanet.evaluation.coco_eval import _loader

    coco_set = _set(data, "all.json")
    loader = _loader(coco_set, coco_set.image_ids[:images], data["det"].cfg, batch_size, workers, pin=False,
                     device_normalise=False)
    assert loader.num_workers == started


def test_decoded_images_are_kept_between_runs_and_change_nothing(data):
    one = _set(data, "bare.json", limit=1)
    cache = DecodedImages()
    first = run_detection(data["det"], one, workers=0, decoded=cache)  # no fork from this busy process
    assert list(cache.kept) == one.image_ids  # decoded once, kept
    again = run_detection(data["det"], one, workers=0, decoded=cache)
    expected = [r for r in data["results"] if r["image_id"] == one.image_ids[0]]
    assert first == again == expected
    assert DecodedImages(budget=0).budget == 0  # nothing fits: every run decodes again (same path as no cache)


@pytest.mark.skipif(sys.platform == "win32", reason="no forkserver on Windows")
def test_the_worker_server_starts_early_once_with_the_workers_modules_imported():
    from multiprocessing import forkserver

    started = ("from multiprocessing import forkserver; from retinanet.evaluation.coco_eval import "
               "start_worker_server as start; start(); print(forkserver._forkserver._forkserver_pid is not None)")
    assert subprocess.run([sys.executable, "-c", started], capture_output=True, text=True, timeout=120,
                          check=True).stdout.strip() == "True"  # in a fresh process, before any loader
    start_worker_server()
    server = forkserver._forkserver._forkserver_pid
    start_worker_server()  # already running: the same server
    assert forkserver._forkserver._forkserver_pid == server
    with _worker_context().Pool(1) as pool:  # a worker forked from it, as run_detection's are
        parent, imported = pool.apply(eval, ("(__import__('os').getppid(), sorted(__import__('sys').modules))",))
    assert parent == server and set(WORKER_MODULES) <= set(imported)


def test_many_checkpoints_one_table_best_first_and_ap_by_epoch(data, tmp_path):
    run_dir = tmp_path / "work_dir"
    run_dir.mkdir()
    calm = torch.load(data["weights"], weights_only=True)
    for epoch, scale in ((1, 0.2), (2, 1.0)):  # epoch 2 is the calm weights: their AP is known
        sd = dict(calm["state_dict"])
        sd["bbox_head.retina_reg.weight"] = sd["bbox_head.retina_reg.weight"] * scale
        torch.save({"meta": {**calm["meta"], "epoch": epoch}, "state_dict": sd}, run_dir / f"epoch_{epoch}.pth")
    r = run_rdet("eval", NAME, "--ann", data["root"] / "half.json", "--images", data["root"] / "images", "--weights",
                 str(run_dir / "epoch_*.pth"), "--limit", "1", "--workers", "0", "--json", env_extra=data["env"])
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    aps = [c["metrics"]["bbox_mAP"] for c in doc["checkpoints"]]
    assert aps == sorted(aps, reverse=True)
    by_epoch = {c["epoch"]: c for c in doc["checkpoints"]}
    assert set(by_epoch) == {1, 2}
    assert by_epoch[2]["metrics"] == coco_metrics(_set(data, "half.json", limit=1), data["results"])
    assert by_epoch[1]["weights_sha256"] == hashlib.sha256((run_dir / "epoch_1.pth").read_bytes()).hexdigest()
    assert doc["plot"] == str(run_dir / "ap_by_epoch.png") and "provenance" in doc
    with Image.open(doc["plot"]) as img:
        assert img.size == (900, 600)
    nothing = run_rdet("eval", NAME, "--ann", data["root"] / "half.json", "--images", data["root"] / "images",
                       "--weights", str(tmp_path / "none_*.pth"), env_extra=data["env"])
    _one_line_error(nothing, "matches no file")


def test_zoo_check_end_to_end_exit_status_names_the_row_and_resumes(data, tmp_path):
    """A user manifest whose 'published' AP is what the row scores passes; 1 AP away fails naming the row (read
    back from the report, not run again); a row whose weights cannot be obtained is reported, not fatal."""
    one = _set(data, "half.json", limit=1)
    ap = 100 * coco_metrics(one, data["results"])["bbox_mAP"]
    manifest = tmp_path / "zoo.toml"
    report = tmp_path / "report"
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")  # obtained (checksum right) but unusable

    def check(published):
        manifest.write_text("schema = 1\n" + zoo_row("calm18", data["weights"], box_ap=published)
                            + zoo_row("gone18", tmp_path / "missing.pth", box_ap=30.0)
                            + zoo_row("bad18", tmp_path / "bad.pth", box_ap=30.0))
        return run_rdet("eval", "--all", "--check", "--ann", data["root"] / "half.json", "--images",
                        data["root"] / "images", "--limit", "1", "--workers", "0", "--report", report, "--offline",
                        env_extra={**data["env"], "RDET_ZOO": str(manifest)})

    ok = check(ap)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads((report / "report.json").read_text())
    rows = {row["name"]: row for row in doc["rows"]}
    assert rows["calm18"]["status"] == "ok" and rows["calm18"]["measured"] == ap and not rows["calm18"]["resumed"]
    assert rows["gone18"]["status"] == rows["bad18"]["status"] == "unavailable"
    assert "gone18" in ok.stderr and "not a loadable checkpoint" in rows["bad18"]["message"]
    assert rows["r50_fpn_1x"]["status"] == "unavailable"  # --all: the bundled rows too (offline: not in the cache)
    assert doc["reproduced"] and doc["provenance"]["annotations_sha256"] == rows["calm18"]["provenance"][
        "annotations_sha256"]
    assert "| calm18 |" in (report / "report.md").read_text()
    off = check(ap - 1.0)
    assert off.returncode == 1
    assert "calm18" in off.stderr.strip().splitlines()[-1]  # named, with its figures
    assert "(+1.00)" in off.stderr.strip().splitlines()[-1]
    rows = {row["name"]: row for row in json.loads((report / "report.json").read_text())["rows"]}
    assert rows["calm18"]["status"] == "off" and rows["calm18"]["resumed"]  # same weights digest: not run again


def test_a_zoo_check_that_compared_no_row_is_not_reported_as_reproduced(tmp_path):
    """A sweep's finding: with every row unavailable, report.json said "reproduced": true and report.md "Every
    row scored reproduced." (the exit status 1 was right)."""
    from zoo.reproduce import OFF, OK, UNAVAILABLE, UNPUBLISHED, RowResult, reproduced, write_report

    gone = RowResult("gone", 36.5, None, UNAVAILABLE, message="offline")
    mine = RowResult("mine", None, 12.0, UNPUBLISHED)
    md, js = write_report(tmp_path, [gone, mine], 0.1, "val.json", "0" * 64, 5)
    assert json.loads(js.read_text())["reproduced"] is None
    assert "No row was compared with a published AP." in md.read_text() and "Every row" not in md.read_text()
    assert reproduced([gone, RowResult("r", 36.5, 36.5, OK)]) is True
    assert reproduced([RowResult("r", 36.5, 36.5, OK), RowResult("x", 36.5, 30.0, OFF)]) is False


# --- bad input: one line, exit 2, before any inference ---------------------------------------------------------


def _one_line_error(r, *words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_sets_are_one_line_errors(data, tmp_path):
    records = [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in IMAGES]
    (tmp_path / "broken.json").write_text('{"images": [')
    write_annotations(tmp_path / "empty.json", [], [])
    write_annotations(tmp_path / "two.json", records, [], categories=[(1, "a"), (2, "b")])
    images = data["root"] / "images"
    cases = [
        (["--ann", tmp_path / "nope.json", "--images", images], ["nope.json: no such file"]),
        (["--ann", tmp_path / "broken.json", "--images", images], ["broken.json", "not valid JSON"]),
        (["--ann", tmp_path / "empty.json", "--images", images], ["no images"]),
        (["--ann", data["root"] / "half.json", "--images", tmp_path], ["3 of 3 images", "a.png, b.jpg"]),
        (["--data-root", tmp_path], ["instances_val2017.json"]),
        (["--ann", tmp_path / "two.json", "--images", images], ["3 classes", "2 categories"]),
    ]
    for args, words in cases:
        _one_line_error(run_rdet("eval", NAME, *args, "--weights", data["weights"], "--quiet", env_extra=data["env"]),
                        *words)
    _one_line_error(run_rdet("eval", "--ann", data["root"] / "half.json", env_extra=data["env"]), "NAME")


def test_an_unreadable_image_stops_the_run_with_one_line(data, tmp_path):
    images = tmp_path / "images"
    records = write_images(images)
    (images / "a.png").write_bytes((images / "a.png").read_bytes()[:-20])  # truncated
    ann = write_annotations(tmp_path / "ann.json", records, [])
    r = run_rdet("eval", NAME, "--ann", ann, "--images", images, "--weights", data["weights"], "--workers", "1",
                 "--quiet", env_extra=data["env"])
    _one_line_error(r, "a.png")


def test_ground_truth_without_info_scores_with_pycocotools_2_0_10(monkeypatch):
    """pycocotools 2.0.10 (admitted by the dependency range) reads gt.dataset['info'] in loadRes; COCO makes the
    key optional and many custom annotation files leave it out."""
    from pycocotools.coco import COCO

    from retinanet.evaluation.scorer import score_coco

    real_load_res = COCO.loadRes

    def load_res_2_0_10(self, results):
        self.dataset["info"]  # noqa: B018 - 2.0.10's copy.deepcopy(self.dataset['info'])
        return real_load_res(self, results)

    monkeypatch.setattr(COCO, "loadRes", load_res_2_0_10)
    gt = {"images": [{"id": 1, "width": 50, "height": 40}], "categories": [{"id": 3, "name": "a"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "area": 200,
                           "iscrowd": 0}]}
    scores = score_coco(gt, [{"image_id": 1, "category_id": 3, "bbox": [5, 5, 20, 10], "score": 0.9}], [1], [3],
                        backend="pycocotools")
    assert scores.stats["bbox_mAP"] == pytest.approx(1.0)


class _BuiltForNumpy1:
    """An import finder that fails pycocotools.coco as a wheel built for numpy 1 does under numpy 2."""

    def find_spec(self, name, path=None, target=None):
        if name == "pycocotools.coco":
            raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C "
                             "header, got 88 from PyObject")
        return None


def test_a_pycocotools_that_cannot_be_imported_is_one_line_in_eval_and_doctor(tmp_path, capsys, monkeypatch,
                                                                             rdet_env):
    """pycocotools before 2.0.8 fails at import under numpy 2 with a ValueError, not an ImportError: rdet eval says
    so in one line (before any model is built) and rdet doctor shows it as a failed check."""
    from cli_inprocess import rdet_here

    for name in [m for m in sys.modules if m == "pycocotools" or m.startswith("pycocotools.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BuiltForNumpy1(), *sys.meta_path])
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
                               "categories": [{"id": 1, "name": "cat"}], "annotations": []}))
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    r = rdet_here(capsys, monkeypatch, "eval", NAME, "--random-weights", "--ann", ann, "--images", tmp_path,
                  "--device", "cpu", env={"RDET_ZOO": str(write_tiny_zoo(tmp_path / "zoo")[0])})
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "cannot import pycocotools (ValueError: numpy.dtype size changed" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = rdet_here(capsys, monkeypatch, "doctor", "--json", "--offline", "--cache-dir", tmp_path / "cache")
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert r.returncode == 1 and checks["pycocotools"]["status"] == "fail"
    assert "pycocotools>=2.0.8" in checks["pycocotools"]["detail"]
