"""The Python API called with wrong or degenerate arguments: each is one ArgumentError (a RetinaNetError and a
ValueError) or ZooError naming the argument, never a TypeError / KeyError from deep inside or a silent result;
NumPy numbers work wherever Python's do."""
from __future__ import annotations

import json
from dataclasses import asdict, fields

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import zoo
from coco_data import write_annotations, write_images
from retinanet import CocoSet, Detector, ModelConfig
from retinanet.errors import ArgumentError, DatasetError, RetinaNetError
from tiny_zoo import NAME, zoo_row

TINY = dict(depth=18, num_classes=3, scale=(64, 64))


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    return Detector(ModelConfig(**TINY), device="cpu")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    records = write_images(root / "img")
    ann = write_annotations(root / "ann.json", records, [(42, 3, [10, 10, 30, 30]), (7, 7, [5, 5, 20, 20]),
                                                         (1000, 12, [3, 3, 40, 40])])
    return CocoSet.load(ann, root / "img")


# --- ModelConfig ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("change, said", [
    ({"depth": "18"}, "^depth must be one of 18, 34"), ({"depth": 18.0}, "^depth must be"),
    ({"depth": True}, "^depth must be"), ({"groups": "1"}, "^groups must be a positive integer, not '1'"),
    ({"depth": 50, "groups": 0}, "^groups must be"), ({"fpn_channels": "a"}, "^fpn_channels must be"),
    ({"head_convs": -1}, "^head_convs must be an integer of at least 0"), ({"frozen_stages": 9}, "^frozen_stages"),
    ({"to_rgb": "no"}, "^to_rgb must be True or False"), ({"to_rgb": 0}, "^to_rgb must be"),
    ({"class_names": "abc"}, "^class_names must be"), ({"class_names": (1, 2, 3)}, "^class_names must be"),
    ({"class_names": ["a", None, "b"]}, "^class_names must be"), ({"class_names": ("a", "b")}, "2 class names"),
    ({"scale": 640}, "^scale must be"), ({"scale": (0, 0)}, "^scale must be"), ({"score_thr": "0.3"}, "^score_thr"),
    ({"num_classes": 0}, "^num_classes must be"), ({"epochs": 0}, "^epochs must be"),
    ({"lr_steps": (0,)}, "^lr_steps must be"), ({"base_lr": "x"}, "^base_lr must be"), ({"extra": 5}, "^extra must"),
    ({"mean": "abc"}, "^mean and std"),
])
def test_model_config_names_the_bad_field(change, said):
    with pytest.raises(ArgumentError, match=said) as caught:
        ModelConfig(**{**TINY, **change})
    assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)  # callers' `except ValueError`


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(), st.text(max_size=3),
                st.lists(st.one_of(st.integers(-2, 2000), st.floats(), st.text(max_size=2)), max_size=4),
                st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("kind", ["ModelConfig", "TrainOptions"])
def test_any_value_of_any_field_is_taken_plain_or_refused_in_one_line(kind, data):
    from retinanet.training.trainer import TrainOptions

    make = ModelConfig if kind == "ModelConfig" else TrainOptions
    field = data.draw(st.sampled_from([f.name for f in fields(make)]))
    value = data.draw(JUNK)
    try:
        made = make(**{**(TINY if make is ModelConfig else {}), field: value})
    except ArgumentError as e:  # never a TypeError or AttributeError from inside
        assert "\n" not in str(e)
        return
    assert json.loads(json.dumps(asdict(made), allow_nan=False))  # what it took is plain, finite JSON


def test_model_config_replace_names_an_unknown_field():
    with pytest.raises(ArgumentError, match="^ModelConfig has no field scor_thr; its fields: depth, groups"):
        ModelConfig(**TINY).replace(scor_thr=0.3)


@settings(max_examples=25, deadline=None)
@given(w=st.integers(1, 4096), h=st.integers(1, 4096), thr=st.floats(0, 1), classes=st.integers(1, 100),
       ints=st.sampled_from([np.int16, np.int32, np.int64, np.uint16]),
       floats=st.sampled_from([np.float32, np.float64]))
def test_numpy_numbers_make_the_same_config_as_python_ones(w, h, thr, classes, ints, floats):
    """scale=(np.int64(640), ...) used to build a config whose to_dict() JSON could not write."""
    thr = float(floats(thr))  # the value the NumPy float stands for
    from_numpy = ModelConfig(scale=[ints(w), ints(h)], score_thr=floats(thr), num_classes=ints(classes),
                             mean=tuple(np.array([1.5, 2, 3], floats)), lr_steps=[ints(1)])
    plain = ModelConfig(scale=(w, h), score_thr=thr, num_classes=classes, mean=(1.5, 2.0, 3.0), lr_steps=(1,))
    assert from_numpy == plain
    assert json.dumps(from_numpy.to_dict()) == json.dumps(plain.to_dict())
    assert ModelConfig(to_rgb=np.bool_(False)).to_rgb is False
    assert ModelConfig(scale=np.array([w, h], ints)) == ModelConfig(scale=(w, h))


# --- zoo -----------------------------------------------------------------------------------------------------

@pytest.fixture
def manifest(tmp_path, rdet_env):
    path = tmp_path / "tiny.toml"
    path.write_text("schema = 1\n" + zoo_row(NAME, tmp_path / "not-downloaded.pth"))
    return path


@pytest.mark.parametrize("call, error, said", [
    (dict(random_weights="no"), ArgumentError, "^random_weights must be True or False, not 'no'"),
    (dict(compile="yes"), ArgumentError, "^compile must be"), (dict(offline="no"), ArgumentError, "^offline"),
    (dict(weights=5), ArgumentError, "^weights must be a path"), (dict(score_thr="0.3"), ArgumentError, "^score_thr"),
    (dict(scale=(0, 0)), ArgumentError, "^scale must be"), (dict(num_classes=0), ArgumentError, "^num_classes"),
    (dict(precision=["fp32"]), RetinaNetError, "^precision must be one of"),
    (dict(name=None), zoo.ZooError, "^a model name must be a str"), (dict(name=5), zoo.ZooError, "model name"),
    (dict(zoo_file=5), zoo.ZooError, "^zoo_file must be a path"),
    (dict(cache_dir=5), zoo.ZooError, "^cache_dir must be a path"),
    (dict(weights="w.pth", random_weights=True), zoo.ZooError, "exclude each other"),  # was: weights ignored
])
def test_zoo_load_says_which_argument_is_wrong_before_any_download(manifest, call, error, said):
    call = {"name": NAME, "zoo_file": manifest, "device": "cpu", **call}
    with pytest.raises(error, match=said):
        zoo.load(call.pop("name"), **call)
    assert not any(manifest.parent.joinpath("cache").rglob("*.pth*"))


def test_zoo_get_takes_names_only(manifest):
    with pytest.raises(zoo.ZooError, match="not None"):
        zoo.get(None, manifest)
    with pytest.raises(zoo.ZooError, match="zoo_file must be a path"):
        zoo.Zoo.load(7)
    assert zoo.get(NAME, manifest).name == NAME
    with pytest.raises(zoo.ZooError, match="^a model name pattern must be a str"):
        zoo.Zoo.load(manifest).filter(5)  # was: TypeError 'argument of type int is not iterable'


# --- Detector, predict_files, predict_frames, Detections, drawing -------------------------------------------

def test_detector_refuses_what_is_not_a_config_or_a_path():
    for cfg in ({"depth": 18}, None):
        with pytest.raises(ArgumentError, match="^cfg must be a retinanet.ModelConfig"):
            Detector(cfg, device="cpu")
    from retinanet import RetinaNet

    with pytest.raises(ArgumentError, match="^cfg must be a retinanet.ModelConfig, not dict"):
        RetinaNet({"depth": 18})  # was: AttributeError in the backbone
    with pytest.raises(ArgumentError, match="^weights must be a path"):
        Detector(ModelConfig(**TINY), 5, device="cpu")
    with pytest.raises(ArgumentError, match="^autotune must be True or False"):
        Detector(ModelConfig(**TINY), device="cpu", autotune="no")


def test_predict_files_takes_one_path_as_one_file(det, coco):
    """A str used to be iterated: each letter of the path was a file that could not be read."""
    one = coco.path(7)
    for given_as in (str(one), one):
        (result,) = list(det.predict_files(given_as, score_thr=0.0))
        assert result.path == str(one) and result.error is None
        assert np.array_equal(result.detections.boxes, det.predict(str(one), score_thr=0.0)[0].boxes)
    with pytest.raises(ArgumentError, match="^predict_files takes a path or an iterable of paths, not NoneType"):
        det.predict_files(None)
    with pytest.raises(ArgumentError, match="^predict_files takes paths"):
        det.predict_files([one, 5])
    for bad in ({"batch_size": 0}, {"score_thr": 1.5}):  # was: run as 1 / nothing found, without a word
        with pytest.raises(ArgumentError, match=f"^{next(iter(bad))} must be"):
            det.detect_prepared([det.prepare(str(one))], **bad)
    for frames in ("abc", [str(one)]):  # paths are predict_files' to take
        with pytest.raises(ArgumentError, match="^predict_frames takes .*Frame.*predict_files takes paths"):
            list(det.predict_frames(frames))


def test_a_source_that_fails_midway_raises_its_own_error(det, coco):
    def paths():
        yield coco.path(7)
        raise OSError("the listing broke")

    with pytest.raises(OSError, match="the listing broke"):
        det.predict_files(paths())


def test_detections_and_drawing_with_none_or_odd_arguments(det, coco):
    from retinanet.inference.visualize import draw_detections

    rgb = np.asarray(__import__("PIL.Image").Image.open(coco.path(7)).convert("RGB"))
    (none,) = det.predict(rgb, score_thr=1.0)
    assert len(none) == 0 and none.to_coco(7) == [] and none.to_list() == [] and none.names == []
    assert draw_detections(rgb, none.boxes, none.scores, none.labels, none.class_names).size == (64, 48)
    (some,) = det.predict(rgb, score_thr=0.0)
    assert json.loads(json.dumps(some.to_coco(np.int64(7))))[0]["image_id"] == 7  # was: int64 not serializable
    with pytest.raises(ArgumentError, match="^image_id must be an integer"):
        some.to_coco("7")  # would match no COCO image, silently
    gray = draw_detections(rgb[:, :, 0], some.boxes[:3], some.scores[:3], some.labels[:3], some.class_names)
    assert gray.size == (64, 48)  # was: TypeError from Pillow
    with pytest.raises(ArgumentError, match="^label.s. 7 have no class name"):
        draw_detections(rgb, some.boxes[:1], some.scores[:1], [7], some.class_names)  # was: IndexError
    with pytest.raises(ArgumentError, match="one each per detection"):
        draw_detections(rgb, some.boxes[:2], some.scores[:1], some.labels[:2], some.class_names)


# --- COCO sets, evaluation, results files ----------------------------------------------------------------------

def test_coco_set_limit_is_a_whole_number(coco):
    for limit in (2.5, "2", True, 0):
        with pytest.raises(DatasetError, match="limit must be a whole number of at least 1"):
            CocoSet.load(coco.ann_file, coco.images_dir, limit=limit)
    assert CocoSet.load(coco.ann_file, coco.images_dir, limit=np.int64(2)).image_ids == [7, 42]
    with pytest.raises(ArgumentError, match="^ann_file must be a path"):
        CocoSet.load(None, coco.images_dir)


def test_run_detection_and_scoring_arguments(det, coco, tmp_path):
    from retinanet.evaluation.coco_eval import coco_metrics, load_results, run_detection, save_results

    for bad, said in (({"batch_size": 0}, "^batch_size must be a positive integer"),  # was: run as 1
                      ({"workers": -1}, "^workers must be an integer of at least 0"),
                      ({"image_ids": [42, 99999]}, "^image_ids: 1 id.s. that ann.json lacks: 99999"),  # KeyError
                      ({"image_ids": [42, 42]}, "^image_ids lists 1 image.s. more than once: 42"),  # detected twice
                      ({"image_ids": "42"}, "^image_ids must be a list"),
                      ({"coco_set": "ann.json"}, "^coco_set must be a retinanet.CocoSet"),
                      ({"progress": 5}, "^progress must be a function")):
        with pytest.raises(ArgumentError, match=said):
            run_detection(det, **{"coco_set": coco, "workers": 0, **bad})
    det.cfg = det.cfg.replace(score_thr=0.0)  # detections to score and save
    try:
        results = run_detection(det, coco, batch_size=np.int64(2), workers=0, image_ids=np.array([42, 7]))
    finally:
        det.cfg = det.cfg.replace(score_thr=0.05)
    assert results and {r["image_id"] for r in results} == {42, 7} and type(results[0]["image_id"]) is int
    with pytest.raises(ArgumentError, match="^image_ids: 1 id.s. that ann.json lacks"):
        coco_metrics(coco, results, image_ids=[99999])  # was: every figure -1 ('no ground truth'), silently
    with pytest.raises(DatasetError, match="^results entry 0 is not a COCO detection"):
        coco_metrics(coco, [{"image_id": 42}])  # was: KeyError
    with pytest.raises(ArgumentError, match="^results must be a list"):
        coco_metrics(coco, None)
    with pytest.raises(ArgumentError, match="^scorer must be one of"):
        coco_metrics(coco, results, backend="x")
    from retinanet.evaluation.coco_eval import DecodedImages

    for budget in ("1GB", -1):
        with pytest.raises(ArgumentError, match="^budget must be an integer of at least 0"):
            DecodedImages(budget)
    # a caller's NumPy numbers are written as numbers; the file reads back as what was given
    numpy_results = [{**r, "image_id": np.int64(r["image_id"]), "score": np.float32(r["score"])} for r in results]
    save_results(tmp_path / "r.json", numpy_results)
    assert load_results(tmp_path / "r.json") == [{**r, "score": float(np.float32(r["score"]))} for r in results]
    with pytest.raises(ArgumentError, match="^results must be a list"):
        save_results(tmp_path / "none.json", None)  # was: a file holding `null`
    with pytest.raises(ArgumentError, match="is a directory"):
        save_results(tmp_path, results)
    assert not (tmp_path / "none.json").exists()


# --- training, benchmark, export -----------------------------------------------------------------------------

@pytest.mark.parametrize("option, said", [
    ({"epochs": 0}, "^epochs must be a positive integer"),  # was: the config's 12 epochs, silently
    ({"keep_last": 0}, "^keep_last must be"), ({"workers": -1}, "^workers must be"), ({"seed": "1"}, "^seed must"),
    ({"lr": -0.1}, "^lr must be"), ({"lr_steps": [0]}, "^lr_steps must be"), ({"clip_grad": 0}, "^clip_grad must"),
    ({"warmup_ratio": 2}, "^warmup_ratio must be"), ({"amp": "no"}, "^amp must be"), ({"batch_size": 0}, "^batch"),
])
def test_train_options_name_the_bad_option(option, said):
    from retinanet.training.trainer import TrainOptions

    with pytest.raises(ArgumentError, match=said):
        TrainOptions(**option)


def test_trainer_refuses_a_work_dir_that_is_a_file_before_training(coco, tmp_path):
    from retinanet.training.trainer import TrainOptions, Trainer

    cfg, options = ModelConfig(**TINY), TrainOptions(epochs=np.int64(1), batch_size=1, workers=0, lr_steps=[1])
    assert options.epochs == 1 and options.lr_steps == (1,)
    no_steps = Trainer(cfg, coco, tmp_path / "w", TrainOptions(batch_size=1, workers=0, lr_steps=[]))
    assert no_steps.schedule.steps == ()  # was: an empty list meant the config's (8, 11)
    (tmp_path / "file").write_text("mine")
    with pytest.raises(RetinaNetError, match="exists and is not a directory"):
        Trainer(cfg, coco, tmp_path / "file", options)  # was: only when the first epoch's checkpoint was saved
    assert (tmp_path / "file").read_text() == "mine"
    with pytest.raises(ArgumentError, match="^train_set must be a retinanet.CocoSet"):
        Trainer(cfg, None, tmp_path / "w", options)
    with pytest.raises(ArgumentError, match="^init must be a path"):
        Trainer(cfg, coco, tmp_path / "w", options, init=5)
    with pytest.raises(ArgumentError, match="^meta must be a dict of plain values"):
        Trainer(cfg, coco, tmp_path / "w", options, meta={"run": np.int64(3)})  # was: epoch_1.pth would not load
    assert not (tmp_path / "w").exists()


def test_time_inference_and_export_check_their_arguments(det, tmp_path):
    from retinanet.benchmark.measure import time_inference
    from retinanet.export.exporter import export

    load = lambda i: det.prepare(np.zeros((32, 32, 3), np.uint8))  # noqa: E731
    for bad, said in (({"images": "10"}, "^images must be a positive integer"), ({"warmup": -1}, "^warmup"),
                      ({"batch_size": 0}, "^batch_size"), ({"load": None}, "^load must be a function")):
        with pytest.raises(ArgumentError, match=said):
            time_inference(det, **{"load": load, "images": 3, "warmup": 1, **bad})
    assert time_inference(det, load, images=np.int64(2), warmup=0).images == 2
    from retinanet.assets import SAMPLE_IMAGE
    from retinanet.benchmark.inputs import encoded_images, loader_for

    # one path is one file (a str was indexed letter by letter: 'r' is no file); no paths at all is said so
    assert loader_for(det, str(SAMPLE_IMAGE))(3)[1].ori_shape == (512, 512)
    assert encoded_images(SAMPLE_IMAGE) == encoded_images()
    with pytest.raises(ArgumentError, match="^paths is empty"):
        loader_for(det, [])  # was: ZeroDivisionError at the first image
    from retinanet.benchmark.measure import training_memory

    for bad, said in (({"images": 0}, "^images must be a positive integer"),  # was: a reshape's RuntimeError
                      ({"size": (0, 0)}, "^size must be two integers from 32 to 4096"),  # a 7x7 kernel's
                      ({"cfg": {}}, "^cfg must be a retinanet.ModelConfig")):
        with pytest.raises(ArgumentError, match=said):
            training_memory(**{"cfg": det.cfg, "images": 1, "size": (64, 64), "iterations": 1, **bad})
    with pytest.raises(ArgumentError, match="^model must be a retinanet RetinaNet"):
        export(None, det.cfg, tmp_path / "m.pt2", fmt="exported-program")
    with pytest.raises(ArgumentError, match="^out must be a path"):
        export(det.model, det.cfg, None, fmt="exported-program")
    from retinanet.export.detector import ExportedDetector

    with pytest.raises(ArgumentError, match="^path must be a path"):
        ExportedDetector(5, device="cpu")
    with pytest.raises(ArgumentError, match="^threads must be a positive integer"):
        ExportedDetector(tmp_path / "m.onnx", device="cpu", threads="2")
    assert not list(tmp_path.iterdir())
