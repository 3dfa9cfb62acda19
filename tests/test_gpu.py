"""On a CUDA device: the GPU paths give the CPU's detections. Skipped where there is no GPU (CI never has one);
benchmarks/gpu_check.sh runs them on the device with `python -m pytest -m gpu tests/test_gpu.py`."""
import numpy as np
import pytest
import torch

from coco_data import IMAGES, write_annotations, write_calm_weights, write_images
from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint, trained_like_state_dict
from retinanet import Detector, ModelConfig
from retinanet.data.coco import CocoSet
from retinanet.data.images import to_bgr
from retinanet.inference.device_path import DevicePath
from shapes_data import CLASSES, rectangles_image, write_shapes

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

SCALE = (640, 480)
ROWS = {"r50_fpn": dict(depth=50), "x101_32x4d_fpn": dict(depth=101, groups=32, base_width=4)}  # two zoo rows


def photo(seed: int, h: int, w: int) -> np.ndarray:
    return rectangles_image(seed, h, w, 20)


@pytest.fixture(scope="module", params=list(ROWS))
def row(request, tmp_path_factory):
    cfg = ModelConfig(scale=SCALE, **ROWS[request.param])
    sd = reference_state_dict(depth=cfg.depth, groups=cfg.groups, base_width=cfg.base_width, seed=1)
    path = tmp_path_factory.mktemp("ckpt") / f"{request.param}.pth"
    save_reference_checkpoint(path, trained_like_state_dict(sd, cfg, to_bgr(photo(0, 480, 640))))
    return cfg, path


def assert_close(a, b, box_tol=0.01, score_tol=1e-4):
    """Same detections within the tolerances. Two detections whose scores differ by less than the rounding
    between devices may come out in either order, so each is paired with an unused one of the other list
    (same label, box and score within tolerance) rather than by position."""
    assert len(a) == len(b)
    unused = set(range(len(b)))
    for i in range(len(a)):
        near = [j for j in sorted(unused, key=lambda j: abs(j - i))
                if a.labels[i] == b.labels[j] and abs(float(a.scores[i]) - float(b.scores[j])) <= score_tol
                and np.abs(a.boxes[i] - b.boxes[j]).max() <= box_tol]
        assert near, f"detection {i} ({a.labels[i]}, {a.scores[i]:.6f}, {a.boxes[i]}) has no match"
        unused.remove(near[0])


@pytest.mark.parametrize("options", [{}, {"layout": "nchw"}, {"autotune": True}], ids=["default", "nchw", "tuned"])
def test_fp32_on_the_gpu_equals_the_cpu(row, options):
    cfg, path = row
    images = [photo(s, 480, 640) for s in range(2)] + [photo(9, 500, 333)]
    cpu = Detector(cfg, path, device="cpu").predict(images)
    gpu_det = Detector(cfg, path, device="cuda", **options)
    gpu_det.use_device_path = False
    assert sum(len(d) for d in cpu) >= 150  # a trained model's load
    graphed = DevicePath(gpu_det).predict(images * 2)[3:]  # the 2nd round replays graphs
    exact_nms = DevicePath(gpu_det, capacity=0).predict(images * 2)[3:]  # NMS after the graph
    for a, b, c, d in zip(cpu, gpu_det.predict(images), graphed, exact_nms):
        assert_close(b, a)  # the plain path on the GPU
        assert_close(c, a)  # graphs, device pre-processing, sync-free post-processing
        assert_close(d, a)


def test_predict_on_the_gpu_runs_the_graphed_device_path(row):
    cfg, path = row
    det = Detector(cfg, path, device="cuda")
    images = [photo(s, 480, 640) for s in range(3)]
    cpu = Detector(cfg, path, device="cpu").predict(images)
    got = [det.predict(im)[0] for im in images]  # the third is replayed from a graph
    from_files = list(det.predict_frames(_frames(images)))
    assert det.device_path().captures == 1 and not det.device_path().failed
    for a, b, c in zip(cpu, got, from_files):
        assert_close(b, a)
        assert_close(c.detections, a)


def _frames(images):
    from retinanet.data.sources import Frame

    return [Frame(f"img{i}", im[:, :, ::-1].copy()) for i, im in enumerate(images)]


def test_graphs_equal_eager_and_a_new_shape_after_capture_is_still_right(row):
    cfg, path = row
    det = Detector(cfg, path, device="cuda")
    graphed, eager = DevicePath(det, capture_after=1), DevicePath(det, graphs=False)
    # back to the first after new ones; 470x630 resizes to 640x477: the 640x480 graph with another geometry
    shapes = [(480, 640), (480, 640), (470, 630), (360, 640), (640, 480), (480, 640)]
    tuned_det = Detector(cfg, path, device="cuda", autotune=True)  # other kernels (and NCHW): its own eager path
    tuned, tuned_eager = DevicePath(tuned_det, capture_after=1), DevicePath(tuned_det, graphs=False)
    autotuning = torch.backends.cudnn.benchmark
    for s, (h, w) in enumerate(shapes):
        img = photo(20 + s, h, w)
        assert_close(graphed.predict(img)[0], eager.predict(img)[0], box_tol=1e-3, score_tol=1e-5)
        assert_close(tuned.predict(img)[0], tuned_eager.predict(img)[0], box_tol=1e-3, score_tol=1e-5)
        assert torch.backends.cudnn.benchmark == autotuning  # switched on for the detector's calls only
    assert graphed.captures == tuned.captures == 3 and not graphed.failed and not tuned.failed


def test_graph_cache_is_bounded_and_evicts_the_least_recent(row):
    cfg, path = row
    det = Detector(cfg, path, device="cuda")
    graphed, eager = DevicePath(det, max_graphs=2, capture_after=1), DevicePath(det, graphs=False)
    for s, (h, w) in enumerate([(480, 640), (360, 640), (320, 640), (480, 640)]):
        img = photo(40 + s, h, w)
        assert_close(graphed.predict(img)[0], eager.predict(img)[0], box_tol=1e-3, score_tol=1e-5)
        assert graphed.graphs <= 2
    assert graphed.captures == 4  # the first shape was evicted by the third and captured again


def test_cudnn_fused_convolutions_equal_the_unfused_model(row):
    """fast=True on CUDA runs ReLUs, biases and residual adds in cuDNN's fused convolutions (inference.fused);
    every convolution must have found a fused engine, and the detections equal the plain unfused model's."""
    from retinanet.inference import fused

    cfg, path = row
    fast, plain = Detector(cfg, path, device="cuda"), Detector(cfg, path, device="cuda", fast=False)
    images = [photo(s, 480, 640) for s in (5, 6)]
    assert any(isinstance(m, fused.FusedBlock) for m in fast.model.modules())
    for a, b in zip(fast.predict(images), plain.predict(images)):
        assert_close(a, b)
    assert not [n for n, m in fast.model.named_modules() if getattr(m, fused._NO_CUDNN_ENGINE, False)]


def test_fp16_and_tf32_run_and_stay_near_fp32(row):
    cfg, path = row
    img = photo(3, 480, 640)
    ref = Detector(cfg, path, device="cuda").predict(img)[0]
    for precision in ("fp16", "tf32"):
        if precision == "tf32" and torch.cuda.get_device_capability()[0] < 8:
            continue
        det = Detector(cfg, path, device="cuda", precision=precision)
        got = DevicePath(det).predict([img, img])[1]
        assert len(got) == len(ref)
        assert np.abs(got.scores - ref.scores).max() < 0.05  # reduced precision: close, not equal


def test_amp_training_runs_a_few_iterations(tmp_path):
    from retinanet.training.trainer import Trainer, TrainingEvents, TrainOptions

    class Losses(TrainingEvents):
        def __init__(self):
            self.losses = []

        def iteration(self, record):
            self.losses.append(record["loss"])

    ann, images = write_shapes(tmp_path / "data", images=8, seed=2)
    cfg = ModelConfig(depth=18, fpn_channels=64, head_convs=2, frozen_stages=-1, scale=(160, 128), num_classes=3,
                      class_names=CLASSES)
    rec = Losses()
    trainer = Trainer(cfg, CocoSet.load(ann, images), tmp_path / "w", TrainOptions(epochs=1, batch_size=2, lr=0.01,
                      warmup_iters=2, amp=True, workers=0, keep_last=1), device="cuda", reporter=rec)
    assert trainer.precision == "fp16"
    trainer.run()
    assert len(rec.losses) >= 3 and all(np.isfinite(rec.losses))


def test_eval_on_the_gpu_equals_eval_on_the_cpu(tmp_path):
    import zoo
    from retinanet.evaluation.coco_eval import run_detection
    from tiny_zoo import NAME, write_tiny_zoo

    manifest, _ = write_tiny_zoo(tmp_path / "zoo")
    weights = write_calm_weights(tmp_path / "calm.pth")
    records = write_images(tmp_path / "images", IMAGES + ((5, "d.jpg", 160, 120), (6, "e.jpg", 160, 120)))
    coco = CocoSet.load(write_annotations(tmp_path / "bare.json", records, []), tmp_path / "images")
    results = {}
    for device in ("cpu", "cuda"):
        det = zoo.load(NAME, weights=weights, zoo_file=manifest, device=device)
        results[device] = run_detection(det, coco, batch_size=2, workers=2)
    cpu, gpu = results["cpu"], results["cuda"]
    assert len(cpu) == len(gpu) > 10
    for a, b in zip(cpu, gpu):
        assert (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
        np.testing.assert_allclose(a["bbox"], b["bbox"], atol=0.01)
        assert abs(a["score"] - b["score"]) < 1e-4


def test_bench_times_pinned_uint8_images_through_one_graph(row):
    from retinanet.benchmark.inputs import loader_for
    from retinanet.benchmark.measure import time_inference

    cfg, path = row
    det = Detector(cfg, path, device="cuda")
    load = loader_for(det)
    image, _ = load(0)
    assert image.dtype == torch.uint8 and image.is_pinned()  # as eval's DataLoader hands images over
    speed = time_inference(det, load, images=6, warmup=2, min_warmup_seconds=0)
    assert speed.images == 4 and det.device_path().captures == 1 and not det.device_path().failed


def test_predict_frames_on_the_gpu_reads_ahead_and_equals_the_cpu(row):
    from retinanet.data.sources import Frame

    cfg, path = row
    frames = [Frame(f"f{i}", to_bgr(photo(60 + i, 480, 640))) for i in range(3)]
    cpu = [r.detections for r in Detector(cfg, path, device="cpu").predict_frames(frames)]
    det = Detector(cfg, path, device="cuda")
    assert det._read_ahead_depth(1) == 2
    gpu = [r.detections for r in det.predict_frames(iter(frames))]
    for a, b in zip(cpu, gpu):
        assert_close(b, a)


def test_pinned_staging_uploads_every_layout_unchanged():
    """Uploads through the reused pinned buffers (inference.staging) give the array's values for every layout,
    also when more uploads are in flight than there are buffers."""
    from retinanet.inference.staging import PinnedStaging
    from test_staging import layouts

    staging = PinnedStaging(torch.device("cuda"), max_buffers=2)
    arrays = list(layouts().values()) * 2
    sent = [staging.upload(a) for a in arrays]
    for a, t in zip(arrays, sent):
        assert t.is_cuda and np.array_equal(t.cpu().numpy(), a)


def test_reading_an_images_results_waits_for_that_image_only(row):
    """Pending.read() waits for its own image's copy, not for work queued after it: otherwise eval, which reads
    an image's results while the next ones run, would wait for those too and the GPU would idle meanwhile."""
    cfg, path = row
    dp = DevicePath(Detector(cfg, path, device="cuda"))
    image = photo(0, 480, 640)
    thr = 0.3  # well under sync_free's capacity of candidates: no exact recomputation, which would wait
    first = dp.queue([dp.prepare(image)], score_thr=thr)
    torch.cuda._sleep(2_000_000_000)  # about a second of GPU clock cycles, queued behind the image
    [dets] = dp.collect(first)
    assert not torch.cuda.current_stream().query()  # collect returned while the sleep still ran
    torch.cuda.synchronize()
    assert len(dets) > 0
    assert_close(dets, Detector(cfg, path, device="cpu").predict(image, score_thr=thr)[0])
