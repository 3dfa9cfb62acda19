"""The GPU inference path (host resize, uint8 upload, device normalise, graphs, sync-free post-processing) gives
Detector.predict's detections exactly; on the CPU it runs the same code eagerly."""
import numpy as np
import pytest
import torch

from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint, trained_like_state_dict
from retinanet import Detector, ModelConfig
from shapes_data import rectangles_image
from retinanet.data.images import to_bgr
from retinanet.data.preprocess import normalize, upload
from retinanet.inference.device_path import DevicePath

CFG = ModelConfig(depth=18, scale=(256, 192))
CAPACITY = 1024


def photo(seed: int, h: int, w: int) -> np.ndarray:
    return rectangles_image(seed, h, w, 12)


@pytest.fixture(scope="module")
def r18_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "r18.pth"
    # fewer candidates than a trained model's 2000, and a matching NMS capacity: the CPU is slow at N x N
    sd = trained_like_state_dict(reference_state_dict(depth=18, seed=4), CFG, to_bgr(photo(0, 240, 300)),
                                 candidates=400)
    save_reference_checkpoint(path, sd)
    return path


def test_uploaded_uint8_is_normalised_as_the_reference_does():
    bgr = photo(3, 50, 70)
    expected = (bgr[:, :, ::-1].astype(np.float32) - np.float32(CFG.mean)) / np.float32(CFG.std)  # RGB, HWC
    got = normalize(upload(bgr, "cpu"), CFG)
    assert got.dtype == torch.float32 and np.array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_device_path_gives_detector_predict_exactly(r18_ckpt):
    det = Detector(CFG, r18_ckpt, device="cpu")
    images = [photo(s, h, w) for s, (h, w) in enumerate([(180, 240), (240, 180), (180, 240)])]
    expected = det.predict(images, batch_size=2)
    got = DevicePath(det, capacity=CAPACITY).predict(images, batch_size=2)
    assert sum(len(d) for d in expected) > 100  # a trained-like load, not an empty comparison
    for a, b in zip(got, expected):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.labels, b.labels) and (a.width, a.height) == (b.width, b.height)


def test_stage_timings_cover_every_stage_and_latency_percentiles_are_ordered(r18_ckpt):
    import cv2

    from retinanet.benchmark.stages import STAGES, percentile, time_stages

    values = [5.0, 1.0, 3.0, 9.0, 7.0, 2.0]
    assert [percentile(values, q) for q in (0, 50, 90, 100)] == list(np.percentile(values, [0, 50, 90, 100]))
    det = Detector(CFG, r18_ckpt, device="cpu")
    encoded = [cv2.imencode(".png", photo(s, 180, 240))[1].tobytes() for s in range(2)]
    report = time_stages(det, encoded, images=2, warmup=1, capacity=CAPACITY)
    assert list(report["stages_ms"]) == list(STAGES) and all(v > 0 for v in report["stages_ms"].values())
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert report["detections_per_image"] > 10 and report["graphs"] is False and report["resize_on_device"] is False


def test_eval_through_the_device_path_gives_the_plain_paths_results(tmp_path):
    import zoo
    from coco_data import IMAGES, write_annotations, write_calm_weights, write_images
    from retinanet.data.coco import CocoSet
    from retinanet.evaluation.coco_eval import run_detection
    from tiny_zoo import NAME, write_tiny_zoo

    manifest, _ = write_tiny_zoo(tmp_path / "zoo")
    weights = write_calm_weights(tmp_path / "calm.pth")
    more = ((5, "d.jpg", 160, 120),)  # b.jpg's size: the two are batched together
    records = write_images(tmp_path / "images", IMAGES + more)
    coco = CocoSet.load(write_annotations(tmp_path / "bare.json", records, []), tmp_path / "images")
    det = zoo.load(NAME, weights=weights, zoo_file=manifest, device="cpu", scale=(320, 256))
    plain = run_detection(det, coco, batch_size=2, workers=0, device_path=False)
    fast = run_detection(det, coco, batch_size=2, workers=1, device_path=True)
    assert len(plain) > 10 and fast == plain
    # one image per batch: more batches than coco_eval.LOOKAHEAD are in flight, still read in order
    assert run_detection(det, coco, batch_size=1, workers=0, device_path=True) == plain
    # where the device path resizes (a GPU, with the installed OpenCV proven), workers hand over decoded images
    from retinanet.inference.device_path import DevicePath

    det._device_path = DevicePath(det, resize_on_device=True)  # what device_path() gives on CUDA
    det.device_path = lambda: det._device_path
    sizes = []
    part = det._device_path.device_part
    det._device_path.device_part = lambda up, meta: (sizes.append(tuple(up.shape[:2])), part(up, meta))[1]
    resized_there = run_detection(det, coco, batch_size=2, workers=1)
    assert resized_there == plain and sorted(sizes) == sorted((h, w) for _, _, w, h in IMAGES + more)


def test_predict_and_predict_frames_route_through_the_device_path_where_there_is_one(r18_ckpt, monkeypatch):
    """What a CUDA device gets, here on the CPU: predict and predict_frames through a DevicePath that also resizes
    on the device (data.device_resize), with the plain path's detections exactly."""
    from retinanet.data.sources import Frame

    det = Detector(CFG, r18_ckpt, device="cpu")
    images = [photo(1, 180, 240), photo(2, 150, 200)]  # 200x150 is upscaled: the device resize's work
    plain = det.predict(images)
    assert det.device_path() is None  # the CPU keeps the plain path
    path = DevicePath(det, capacity=CAPACITY, resize_on_device=True)
    resized = []
    monkeypatch.setattr(path, "device_part", lambda up, meta, _part=path.device_part: resized.append(
        tuple(up.shape[:2]) != meta.img_shape) or _part(up, meta))
    monkeypatch.setattr(det, "device_path", lambda: path)
    routed = det.predict(images[:1])
    frames = list(det.predict_frames([Frame("f", images[1][:, :, ::-1].copy())]))
    assert resized == [True, True] and sum(len(d) for d in plain) > 50
    for a, b in zip(plain, [routed[0], frames[0].detections]):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.labels, b.labels) and (a.width, a.height) == (b.width, b.height)


def test_predict_frames_read_ahead_in_a_thread_gives_the_same_results_in_order(r18_ckpt):
    """On CUDA the next frames are decoded by a thread while the current ones are detected (data.read_ahead):
    forced here on the CPU, the same detections and errors come out in input order."""
    import threading

    from retinanet.data.sources import Frame

    det = Detector(CFG, r18_ckpt, device="cpu")
    readers = []

    def frames():
        for i, (h, w) in enumerate([(180, 240), (0, 0), (150, 200), (180, 240)]):
            readers.append(threading.current_thread().name)
            yield Frame(f"f{i}", photo(i, h, w)[:, :, ::-1].copy()) if h else Frame(f"f{i}", None, error="broken")

    assert det._read_ahead_depth(1) == 0  # the CPU reads in its own thread by default
    plain = list(det.predict_frames(frames()))
    det.read_ahead_frames = 2
    ahead = list(det.predict_frames(frames(), batch_size=2))
    assert readers[:4] == ["MainThread"] * 4 and set(readers[4:]) == {"rdet-read-ahead"}
    assert [r.path for r in ahead] == ["f0", "f1", "f2", "f3"] and ahead[1].error == "broken"
    for a, b in zip(plain, ahead):
        assert (a.detections is None) == (b.detections is None)
        if a.detections is not None:
            assert np.array_equal(a.detections.boxes, b.detections.boxes) and len(a.detections) > 0


def test_what_a_graph_captures_never_waits_for_the_device(r18_ckpt):
    """A CUDA graph cannot hold a host synchronisation (.item(), nonzero(), a size that depends on values).
    FakeTensorMode has shapes but no values, so any such operation raises in it: the captured function (forward
    and sync-free post-processing) runs through, and the exact path, which synchronises, is caught."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from retinanet.data.preprocess import planned_meta
    from retinanet.inference.postprocess import detect_single
    from retinanet.inference.sync_free import FIELDS, geometry_rows

    det = Detector(CFG, r18_ckpt, device="cpu", fast=False)  # no fused oneDNN ops: those are the CPU's alone
    metas = [planned_meta(180, 240, CFG), planned_meta(170, 236, CFG)]  # one padded size, two geometries
    batch, geometry = torch.zeros(2, 3, *metas[0].pad_shape), geometry_rows(metas)
    fn = DevicePath(det, capacity=CAPACITY).detect_fn(0.05)
    with torch.inference_mode():
        det.model.anchor_generator.grid_anchors([(24, 32), (12, 16), (6, 8), (3, 4), (2, 2)], "cpu")  # cached
        with FakeTensorMode(allow_non_fake_inputs=True) as mode:
            out = fn(mode.from_tensor(batch), mode.from_tensor(geometry))
        assert len(out) == 2 * FIELDS and tuple(out[0].shape) == (6 * CFG.max_per_img + 2,)  # packed rows
        cls, reg = det.model(batch)
        anchors = det.model.anchor_generator.grid_anchors([tuple(c.shape[-2:]) for c in cls], "cpu")
        with pytest.raises(Exception, match="nonzero|data.dependent|local_scalar"):
            with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                detect_single([mode.from_tensor(c[0]) for c in cls], [mode.from_tensor(r[0]) for r in reg], anchors,
                              metas[0])
