"""`rdet export` and exported files in predict / eval, as a user runs them (subprocesses of the installed rdet)."""
import json

import pytest

from coco_data import boxes_from_results, write_annotations, write_calm_weights, write_images
from export_helpers import SCALE
from retinanet.assets import SAMPLE_IMAGE
from tiny_zoo import NAME, run_rdet, write_tiny_zoo

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny18 zoo with calm weights, a small COCO set whose ground truth is half of the PyTorch model's
    confident detections, and one `rdet export --dynamic --json` run of it, all at the small test scale."""
    import zoo
    from retinanet.data.coco import CocoSet
    from retinanet.evaluation.coco_eval import coco_metrics, run_detection

    root = tmp_path_factory.mktemp("export_cli")
    manifest, _ = write_tiny_zoo(root / "zoo")
    weights = write_calm_weights(root / "calm.pth")
    records = write_images(root / "images")
    bare = write_annotations(root / "bare.json", records, [])
    det = zoo.load(NAME, weights=weights, zoo_file=manifest, device="cpu", scale=SCALE)
    results = run_detection(det, CocoSet.load(bare, root / "images"), batch_size=1, workers=0)
    confident = [r for r in results if r["score"] >= 0.3]
    half = write_annotations(root / "half.json", records, boxes_from_results(confident, lambda i: i % 2 == 0))
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}
    onnx_file = root / "tiny.onnx"
    r = run_rdet("export", NAME, "--weights", weights, "--dynamic", "--out", onnx_file, "--json",
                 "--size", "x".join(map(str, SCALE)), env_extra=env)
    assert r.returncode == 0, r.stderr
    return {"root": root, "weights": weights, "env": env, "onnx": onnx_file, "export": json.loads(r.stdout),
            "metrics": coco_metrics(CocoSet.load(half, root / "images"), results),
            "photo": det.predict(str(SAMPLE_IMAGE), score_thr=0.3)[0]}


def test_export_json_reports_a_passing_check_on_the_photo_and_generated_images(setup):
    doc = setup["export"]
    assert doc["model"] == NAME and doc["format"] == "onnx" and doc["dynamic"] and doc["input_size"] is None
    assert doc["bytes"] == setup["onnx"].stat().st_size and len(doc["weights_sha256"]) == 64
    check = doc["check"]
    assert check["passed"] and check["box_tol"] == 0.01 and check["score_tol"] == 1e-4
    assert "onnxruntime" in check["runtime"]
    images = {row["image"]: row for row in check["images"]}
    assert "bundled photo" in images and "generated 427x640" in images  # portrait too: the export is dynamic
    for row in images.values():
        assert row["torch_detections"] == row["export_detections"] > 0 and row["labels_agree"]
        assert row["max_box_diff"] <= 0.01 and row["max_score_diff"] <= 1e-4


def test_eval_of_the_onnx_file_gives_the_checkpoints_ap(setup):
    root = setup["root"]
    r = run_rdet("eval", NAME, "--ann", root / "half.json", "--images", root / "images", "--weights", setup["onnx"],
                 "--json", "--workers", "0", env_extra=setup["env"])
    assert r.returncode == 0, r.stderr
    onnx_metrics, torch_metrics = json.loads(r.stdout)["metrics"], setup["metrics"]
    assert 0.2 < torch_metrics["bbox_mAP"] < 0.9
    for key, value in torch_metrics.items():
        assert onnx_metrics[key] == pytest.approx(value, abs=1e-4), key


def test_predict_runs_the_onnx_file_like_the_checkpoint(setup):
    r = run_rdet("predict", "--model", NAME, "--weights", setup["onnx"], "--json", "--score-thr", "0.3",
                 env_extra=setup["env"])
    assert r.returncode == 0, r.stderr
    (got,) = json.loads(r.stdout)["images"]  # the bundled photo
    ref = setup["photo"]
    assert len(got["detections"]) == len(ref) > 0
    for b, box, score, label in zip(got["detections"], ref.boxes, ref.scores, ref.labels):
        assert b["label"] == label and abs(b["score"] - score) <= 1e-4
        assert max(abs(x - y) for x, y in zip(b["bbox"], box)) <= 0.01


@pytest.mark.parametrize("args, words", [
    (["eval", "r50_fpn_1x", "--ann", "ANN", "--images", "IMAGES", "--weights", "ONNX"],
     "was exported from tiny18, not r50_fpn_1x"),
    (["export", NAME, "--format", "exported-program", "--weights", "ONNX"], "an exported file"),
])
def test_mismatched_exports_and_bad_options_are_refused_with_one_line(setup, args, words):
    root = setup["root"]  # broken files: test_export.py, in-process
    subst = {"ONNX": setup["onnx"], "ANN": root / "half.json", "IMAGES": root / "images"}
    r = run_rdet(*[subst.get(a, a) for a in args], env_extra=setup["env"], cwd=root)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0], r.stderr


def test_zoo_load_runs_exports_only_as_exported(setup):
    import zoo
    from retinanet.errors import ExportError

    manifest = setup["env"]["RDET_ZOO"]
    det = zoo.load(NAME, weights=setup["onnx"], zoo_file=manifest, device="cpu", score_thr=0.5)
    assert det.cfg.score_thr == 0.5 and det.runtime.startswith("onnxruntime")
    for kw, words in [({"precision": "bf16"}, "--precision and --compile"), ({"compile": True}, "--compile"),
                      ({"nms_iou": 0.6}, "nms_iou cannot change in an exported model")]:
        with pytest.raises(ExportError, match=words):
            zoo.load(NAME, weights=setup["onnx"], zoo_file=manifest, device="cpu", **kw)


def test_bench_times_the_onnx_file_and_names_its_runtime(setup):
    r = run_rdet("bench", NAME, "--weights", setup["onnx"], "--device", "cpu", "--num-images", "2", "--warmup", "1",
                 "--size", "x".join(map(str, SCALE)), "--json", env_extra=setup["env"])
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["results"]
    assert row["runtime"].startswith("onnxruntime") and row["fps"] > 0 and row["mem_gb"] is None  # speed only
    mem = run_rdet("bench", NAME, "--weights", setup["onnx"], "--mem", env_extra=setup["env"])
    assert mem.returncode == 2 and "needs a checkpoint" in mem.stderr and len(mem.stderr.strip().splitlines()) == 1
