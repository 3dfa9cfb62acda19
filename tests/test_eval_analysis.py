"""The evaluation's explanations (per-class figures, matching, confusion matrix, error breakdown, plots) against
figures worked out by hand, COCOeval itself, and both scorers against each other."""
import contextlib
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import hand_detections as hand
from coco_data import CAT_IDS, IMAGES, write_annotations
from retinanet.data.coco import CocoSet
from retinanet.evaluation.analysis import PLOT_FILES, analyse, class_figures, write_plots
from retinanet.evaluation.coco_eval import score_set
from retinanet.evaluation.matching import IGNORED, UNMATCHED, group_by_image, greedy_match
from retinanet.evaluation.per_class import by_ap, class_mean, csv_text
from retinanet.evaluation.plots import ap_by_epoch_chart
from retinanet.evaluation.scorer import available_backends

BACKENDS = available_backends()


@pytest.fixture(scope="module")
def hand_set(tmp_path_factory):
    return CocoSet.load(hand.write_hand_set(tmp_path_factory.mktemp("hand")), ".", check_files=False)


@pytest.fixture(scope="module")
def hand_analysis(hand_set):
    return analyse(hand_set, hand.DETECTIONS, score_set(hand_set, hand.DETECTIONS))


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_class_figures_match_the_hand_worked_ones(hand_set, backend):
    scores = score_set(hand_set, hand.DETECTIONS, backend=backend)
    rows = class_figures(hand_set, scores)
    assert [r.name for r in by_ap(rows)] == ["circle", "square", "triangle"]
    for r in rows:
        ap, ar, gt = hand.PER_CLASS[r.name]
        assert (r.ap, r.ap50, r.ap75) == pytest.approx((ap, ap, ap), abs=1e-12)
        assert r.ar100 == pytest.approx(ar, abs=1e-12) and r.gt == gt
    assert scores.stats["bbox_mAP"] == pytest.approx(hand.AP, abs=1e-12)
    assert class_mean(rows) == scores.stats["bbox_mAP"]
    lines = csv_text(by_ap(rows)).splitlines()
    assert lines[0] == "category_id,name,ap,ap50,ap75,ar100,gt" and lines[1].startswith("3,circle,0.5,")


def test_confusion_matrix_counts_match_the_hand_worked_ones(hand_set, hand_analysis):
    cm = hand_analysis.confusion
    assert cm.names == ("circle", "square", "triangle", "background") and (cm.iou_thr, cm.score_thr) == (0.5, 0.3)
    assert cm.counts.tolist() == hand.CONFUSION
    # a score threshold of 0.65 leaves out d3 (.60) and d8 (.55): the triangle column empties, nothing else moves
    images = group_by_image(hand_set.coco.dataset, hand.DETECTIONS, hand_set.image_ids, hand_set.cat_ids)
    from retinanet.evaluation.confusion import confusion_matrix

    strict = confusion_matrix(images, hand_set.cat_ids, dict(zip(hand_set.cat_ids, hand_set.class_names)),
                              score_thr=0.65).counts
    expected = np.array(hand.CONFUSION)
    expected[3, 2] = 0
    assert strict.tolist() == expected.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_error_type_and_its_ap_gain_match_the_hand_worked_ones(hand_set, backend):
    found = analyse(hand_set, hand.DETECTIONS, score_set(hand_set, hand.DETECTIONS), backend=backend).errors
    assert found.ap50 == pytest.approx(hand.AP, abs=1e-12)
    for kind, (count, gain) in hand.ERRORS.items():
        assert found.counts[kind] == count, kind
        assert found.gains[kind] == pytest.approx(gain, abs=1e-12), kind
    assert [e["type"] for e in found.to_dict()["errors"]] == list(hand.ERRORS)


def test_score_histogram_splits_true_and_false_positives(hand_analysis):
    h = hand_analysis.histogram
    assert len(h.edges) == 21 and h.edges[19] == 0.95
    tp = sorted(d["score"] for i, d in enumerate(hand.DETECTIONS) if i in (0, 6, 7))
    fp = sorted(d["score"] for i, d in enumerate(hand.DETECTIONS) if i not in (0, 6, 7))
    assert h.true_positives == tuple(np.histogram(tp, bins=np.array(h.edges))[0])
    assert h.false_positives == tuple(np.histogram(fp, bins=np.array(h.edges))[0])
    assert h.false_positives[19] == 1  # d4's 0.95 in [0.95, 1]


# --- the matching is COCOeval's ------------------------------------------------------------------------------


def _cocoeval_matches(gt_dataset, results, image_ids):
    """pycocotools' own per-detection decision at IoU 0.5, area all, 100 detections: {result index: gt index,
    UNMATCHED or IGNORED}."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dataset
        gt.createIndex()
        dt = gt.loadRes([dict(r, index=i) for i, r in enumerate(results)])
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
    ann_position = {a["id"]: i for i, a in enumerate(gt_dataset["annotations"])}
    decided = {}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        for d_id, m, ignored in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0]):
            index = dt.anns[d_id]["index"]
            decided[index] = IGNORED if ignored else (ann_position[int(m)] if m else UNMATCHED)
    return decided


_box = st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(1, 40), st.integers(1, 40))


@settings(max_examples=40, deadline=None)
@given(gts=st.lists(st.tuples(st.sampled_from(CAT_IDS), _box, st.booleans()), max_size=6),
       dets=st.lists(st.tuples(st.sampled_from(CAT_IDS), _box, st.sampled_from([0.3, 0.5, 0.7, 0.9])), max_size=8))
def test_matching_decides_every_detection_as_cocoeval_does(gts, dets):
    """Random boxes, crowd regions and tied scores on one image: each detection's match equals COCOeval's."""
    image = {"id": 5, "file_name": "x.png", "width": 100, "height": 100}
    anns = [{"id": i + 1, "image_id": 5, "category_id": c, "bbox": list(map(float, b)), "area": float(b[2] * b[3]),
             "iscrowd": int(crowd)} for i, (c, b, crowd) in enumerate(gts)]
    dataset = {"images": [image], "annotations": anns,
               "categories": [{"id": c, "name": str(c)} for c in CAT_IDS]}
    results = [{"image_id": 5, "category_id": c, "bbox": list(map(float, b)), "score": s} for c, b, s in dets]
    expected = _cocoeval_matches(dataset, results, [5]) if results else {}
    [img] = group_by_image(dataset, results, [5], CAT_IDS)
    dt_gt, _ = greedy_match(img, 0.5)
    mine = {int(img.dt_index[d]): int(img.gt_index[g]) if g >= 0 else int(g) for d, g in enumerate(dt_gt)}
    assert mine == expected


# --- plots ---------------------------------------------------------------------------------------------------


def _looks_like_a_chart(path, min_size=(600, 300)):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    assert img.width >= min_size[0] and img.height >= min_size[1]
    ink = (rgb < 200).any(axis=2)
    assert ink.mean() > 0.01  # text, axes and data, not a blank page
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 8  # colours beyond black on white: data was drawn
    return rgb


def test_plots_are_real_pngs_that_are_not_blank(hand_analysis, tmp_path):
    paths = write_plots(hand_analysis, tmp_path / "plots", "hand")
    assert [p.name for p in paths] == list(PLOT_FILES)
    for p in paths:
        _looks_like_a_chart(p)
    # the confusion matrix's darkest cells are its full rows (circle->circle, triangle->missed)
    chart = ap_by_epoch_chart([(1, 10.0), (2, 20.5), (3, 19.0)], tmp_path / "epochs.png", "run")
    _looks_like_a_chart(chart)


def test_a_set_without_ground_truth_still_plots(tmp_path):
    records = [{"id": i, "file_name": n, "width": w, "height": h} for i, n, w, h in IMAGES]
    empty = CocoSet.load(write_annotations(tmp_path / "bare.json", records, []), tmp_path, check_files=False)
    found = analyse(empty, hand.DETECTIONS, score_set(empty, hand.DETECTIONS))
    assert found.overall_curves == [] and all(r.ap is None for r in found.per_class)
    assert found.errors.counts["background"] == len(hand.DETECTIONS) and found.errors.gains["background"] is None
    for p in write_plots(found, tmp_path / "plots"):
        with Image.open(p) as img:
            img.verify()


# --- rdet eval --per-class / --csv / --plots, re-scoring saved detections ----------------------------------------


def test_cli_per_class_csv_plots_and_json_with_provenance(hand_set, tmp_path):
    import json

    from tiny_zoo import run_rdet

    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(hand.DETECTIONS))
    base = ["eval", "--results", dets, "--ann", hand_set.ann_file]
    r = run_rdet(*base, "--per-class", "--csv", tmp_path / "pc.csv", "--plots", tmp_path / "plots", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc) == ["model", "images", "metrics", "published_box_ap", "per_class", "analysis", "plots",
                         "provenance"]
    assert [c["name"] for c in doc["per_class"]] == ["circle", "square", "triangle"]  # best AP first
    assert doc["per_class"][1]["ap"] == pytest.approx(17 / 101, abs=1e-12) and doc["per_class"][1]["gt"] == 3
    errors = {e["type"]: (e["count"], e["ap50_gain"]) for e in doc["analysis"]["error_breakdown"]["errors"]}
    assert errors == {k: (n, pytest.approx(g, abs=1e-12)) for k, (n, g) in hand.ERRORS.items()}
    assert doc["analysis"]["confusion_matrix"]["counts"] == hand.CONFUSION
    assert [p.rsplit("/", 1)[-1] for p in doc["plots"]] == list(PLOT_FILES)
    for p in doc["plots"]:
        _looks_like_a_chart(p)
    prov = doc["provenance"]
    import hashlib

    assert prov["annotations_sha256"] == hashlib.sha256(hand_set.ann_file.read_bytes()).hexdigest()
    assert prov["weights"] is None and prov["rdet_version"] and prov["versions"]["torch"]
    assert prov["scorer"].split()[0] in BACKENDS
    assert (tmp_path / "pc.csv").read_text().splitlines()[1].startswith("3,circle,0.5,0.5,0.5,1.0,2")
    # the tables, for people: per class best first, then the errors with their AP50 gains
    table = run_rdet(*base, "--per-class", "--plots", tmp_path / "plots2")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│ circle") or line.startswith("│ square")]
    assert "50.0" in rows[0] and "16.8" in rows[1]
    assert any("localisation" in line and "+16.83" in line for line in lines)
    # bad output paths: one line, before any work
    (tmp_path / "afile").write_text("x")
    bad = run_rdet(*base, "--plots", tmp_path / "afile")
    assert bad.returncode == 2 and "afile: exists and is not a directory" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
