"""The inference fast paths change speed, not detections."""
import numpy as np
import pytest
import torch

from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint, trained_like_state_dict
from retinanet import Detector, ModelConfig
from retinanet.inference import fused
from retinanet.errors import RetinaNetError
from retinanet.inference.fast import cpu_has_bf16, fold_batchnorm, optimize_for_inference


def noise_image(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def r50_ckpt(tmp_path_factory):
    """Random trunk, trained-like final layers: with fully random ones every score is 1.0 and deltas are in the
    tens, so exp() turns the ~1e-6 relative rounding of BN folding into 0.04 px (on some CPUs) and the test
    would measure the weights' absurdity, not the fast path."""
    path = tmp_path_factory.mktemp("ckpt") / "r50.pth"
    cfg = ModelConfig(depth=50, scale=(320, 256))
    save_reference_checkpoint(path, trained_like_state_dict(reference_state_dict(depth=50, seed=3), cfg,
                                                            noise_image(0, 200, 300)[:, :, ::-1]))
    return path


def test_folding_removes_every_backbone_batchnorm():
    det = Detector(ModelConfig(depth=50), device="cpu", fast=False)
    assert fold_batchnorm(det.model.backbone) == 1 + 16 * 3 + 4  # stem, 16 blocks x 3, 4 downsamples
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in det.model.modules())


@pytest.mark.parametrize("style", ["pytorch", "caffe"])
def test_fast_fp32_gives_the_same_detections(r50_ckpt, style):
    cfg = ModelConfig(depth=50, style=style, scale=(320, 256))
    img = noise_image(0, 200, 300)
    plain = Detector(cfg, r50_ckpt, device="cpu", fast=False).predict(img)[0]
    fast_det = Detector(cfg, r50_ckpt, device="cpu", fast=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast_det.model.modules())  # really folded
    assert not fused.available(torch.device("cpu")) or any(isinstance(m, fused.FusedBlock) for m in fast_det.model.modules())
    fast = fast_det.predict(img)[0]
    assert len(plain) == len(fast) == cfg.max_per_img  # a trained model's load: NMS leaves more than 100
    assert len(np.unique(plain.boxes, axis=0)) == len(plain)  # distinct boxes, not one box in every class
    np.testing.assert_allclose(fast.boxes, plain.boxes, atol=0.01)
    np.testing.assert_allclose(fast.scores, plain.scores, atol=1e-4)
    assert (fast.labels == plain.labels).all()


def test_fused_relus_and_adds_are_bit_identical(r50_ckpt):
    """oneDNN post-ops reuse the convolution's output: the fused model gives exactly the unfused one's numbers."""
    cfg = ModelConfig(depth=50, scale=(320, 256))
    img = np.random.default_rng(2).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    fused_det = Detector(cfg, r50_ckpt, device="cpu")
    unfused = Detector(cfg, r50_ckpt, device="cpu", fast=False)
    optimize_for_inference(unfused.model, unfused.device, fuse=False)
    unfused.channels_last = True
    a, b = fused_det.predict(img)[0], unfused.predict(img)[0]
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)


def test_bf16_runs_where_the_cpu_has_it_and_fp16_is_refused_on_the_cpu(r50_ckpt):
    cfg = ModelConfig(depth=50, scale=(160, 128))
    if cpu_has_bf16():
        img = np.random.default_rng(1).integers(0, 255, (100, 150, 3), dtype=np.uint8)
        dets = Detector(cfg, r50_ckpt, device="cpu", precision="bf16").predict(img)[0]
        assert dets.boxes.dtype == np.float32 and len(dets) > 0
    else:
        with pytest.raises(RetinaNetError, match="bf16"):
            Detector(cfg, None, device="cpu", precision="bf16")
    with pytest.raises(RetinaNetError, match="fp16"):
        Detector(cfg, None, device="cpu", precision="fp16")
    with pytest.raises(RetinaNetError, match="precision"):
        Detector(cfg, None, device="cpu", precision="int3")



def test_tf32_is_refused_on_the_cpu_in_one_line():
    with pytest.raises(RetinaNetError, match="tf32 .*not available on the CPU"):
        Detector(ModelConfig(depth=18, scale=(160, 128)), None, device="cpu", precision="tf32")


def test_nchw_layout_gives_the_channels_last_detections_and_a_bad_layout_is_one_line(r50_ckpt):
    cfg = ModelConfig(depth=50, scale=(320, 256))
    img = noise_image(4, 200, 300)
    nhwc = Detector(cfg, r50_ckpt, device="cpu")
    nchw = Detector(cfg, r50_ckpt, device="cpu", layout="nchw")
    assert nhwc.channels_last and not nchw.channels_last and nchw.optimized
    conv = nchw.model.backbone.conv1.weight
    assert conv.is_contiguous() and not nhwc.model.backbone.conv1.weight.is_contiguous()
    a, b = nhwc.predict(img)[0], nchw.predict(img)[0]
    assert len(a) == len(b) > 0 and (a.labels == b.labels).all()
    np.testing.assert_allclose(a.boxes, b.boxes, atol=0.01)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    with pytest.raises(RetinaNetError, match="layout must be one of auto, channels_last, nchw"):
        Detector(cfg, r50_ckpt, device="cpu", layout="nhwc")


def test_auto_layout_is_nchw_only_for_autotuned_fp32_on_cuda():
    from retinanet.inference.fast import channels_last_for

    cuda, cpu = torch.device("cuda"), torch.device("cpu")  # a device object needs no GPU
    assert not channels_last_for(cuda, "fp32", "auto", autotune=True)
    assert channels_last_for(cuda, "fp32", "auto") and channels_last_for(cuda, "fp16", "auto", autotune=True)
    assert channels_last_for(cpu, "fp32", "auto", autotune=True) and channels_last_for(cuda, "tf32", autotune=True)
    assert not channels_last_for(cpu, "fp32", "nchw") and channels_last_for(cuda, "fp32", "channels_last", True)
