"""The engine against the reference's semantics: layout, anchors, box coding, post-processing."""
import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint

from retinanet import CheckpointError, Detector, ModelConfig, RetinaNet
from retinanet.model.anchors import AnchorGenerator
from retinanet.model.box_coder import MAX_RATIO, decode, encode
from retinanet.model.checkpoint import load_state
from retinanet.inference.postprocess import ImageMeta, detect_single, filter_and_nms
from zoo.manifest import Zoo

ZOO = Zoo.load()


@functools.lru_cache(maxsize=2)
def _state(depth, groups, base_width):
    return reference_state_dict(depth, groups, base_width)


@pytest.mark.parametrize("name", ZOO.names())
def test_every_row_loads_a_reference_checkpoint_and_runs(name, tmp_path):
    entry = ZOO.get(name)
    path = tmp_path / entry.filename
    save_reference_checkpoint(path, _state(entry.depth, entry.groups, entry.base_width))
    det = Detector(entry.model_config(scale=(96, 64)), path, device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    (res,) = det.predict(img, score_thr=0.0)
    assert res.boxes.shape[1] == 4 and len(res) <= 100
    assert (res.boxes[:, 2] <= 70 + 1e-3).all() and (res.boxes[:, 3] <= 50 + 1e-3).all()
    assert np.all(np.diff(res.scores) <= 0)


def test_layout_counts_match_the_published_files():
    for depth, groups, width, n in [(50, 1, 64, 354), (101, 1, 64, 660), (101, 32, 4, 660), (101, 64, 4, 660)]:
        model = RetinaNet(ModelConfig(depth=depth, groups=groups, base_width=width))
        assert len(model.state_dict()) == n


def test_caffe_style_strides_on_the_first_conv():
    model = RetinaNet(ModelConfig(depth=50, style="caffe"))
    block = model.backbone.layer2[0]
    assert block.conv1.stride == (2, 2) and block.conv2.stride == (1, 1)
    assert not any(p.requires_grad for n, p in model.backbone.named_parameters() if ".bn" in n or "bn1" in n)
    pt = RetinaNet(ModelConfig(depth=50))
    assert pt.backbone.layer2[0].conv2.stride == (2, 2)
    assert pt.backbone.layer2[0].bn1.weight.requires_grad and not pt.backbone.layer1[0].bn1.weight.requires_grad


def test_pytorch_style_backbone_equals_torchvision():
    from torchvision.models import resnet50, resnext50_32x4d

    for ours_cfg, tv in [(ModelConfig(depth=50), resnet50()), (ModelConfig(depth=50, groups=32, base_width=4),
                                                                 resnext50_32x4d())]:
        tv.eval()
        ours = RetinaNet(ours_cfg).eval()
        state = {k: v for k, v in tv.state_dict().items() if not k.startswith("fc.")}
        load_state(ours.backbone, state)
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            c5 = ours.backbone(x)[3]
            ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))
        torch.testing.assert_close(c5, ref)


def test_fpn_level_sizes():
    model = RetinaNet(ModelConfig(depth=18)).eval()
    with torch.no_grad():
        cls, reg = model(torch.zeros(1, 3, 800, 1216))
    assert [tuple(c.shape[-2:]) for c in cls] == [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    assert cls[0].shape[1] == 720 and reg[0].shape[1] == 36


def test_strict_loading_lists_missing_unexpected_and_wrong_shapes(tmp_path):
    sd = dict(_state(50, 1, 64))
    del sd["neck.fpn_convs.4.conv.weight"]
    sd["bbox_head.extra.weight"] = torch.zeros(1)
    sd["bbox_head.retina_cls.bias"] = torch.zeros(9 * 3)
    path = tmp_path / "bad.pth"
    save_reference_checkpoint(path, sd)
    with pytest.raises(CheckpointError) as info:
        Detector(ModelConfig(depth=50), path, device="cpu")
    text = str(info.value)
    assert "neck.fpn_convs.4.conv.weight" in text and "bbox_head.extra.weight" in text
    assert "bbox_head.retina_cls.bias" in text and "\n" not in text


def test_checkpoints_are_never_unpickled_as_code(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": {"x": functools.partial(print, "pwned")}}, path)
    with pytest.raises(CheckpointError, match="refused: it holds more than tensors"):
        Detector(ModelConfig(depth=18), path, device="cpu")
    good = tmp_path / "good.pth"
    save_reference_checkpoint(good, _state(50, 1, 64))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(CheckpointError):
        Detector(ModelConfig(depth=50), truncated, device="cpu")


def test_bare_state_dict_and_meta_classes(tmp_path):
    sd = reference_state_dict(18, num_classes=3)
    bare = tmp_path / "bare.pth"
    torch.save(sd, bare)
    det = Detector(ModelConfig(depth=18, num_classes=3), bare, device="cpu")
    assert det.class_names == ("class_0", "class_1", "class_2")
    named = tmp_path / "named.pth"
    save_reference_checkpoint(named, sd, classes=["cat", "dog", "fox"])
    det = Detector(ModelConfig(depth=18), named, device="cpu")  # classes and their count come from meta
    assert det.class_names == ("cat", "dog", "fox") and det.category_ids == (1, 2, 3)


# ---- anchors ----------------------------------------------------------------------------------------------

def test_base_anchors_stride_8():
    gen = AnchorGenerator()
    base = gen.base_anchors[0]
    widths = base[:, 2] - base[:, 0]
    expected = [45.2548, 57.0175, 71.8376, 32, 40.3175, 50.7968, 22.6274, 28.5088, 35.9188]
    torch.testing.assert_close(widths, torch.tensor(expected), atol=1e-3, rtol=0)
    heights = base[:, 3] - base[:, 1]
    torch.testing.assert_close(heights, torch.tensor(expected[6:] + expected[3:6] + expected[:3]), atol=1e-3, rtol=0)
    torch.testing.assert_close(base[:, :2], -base[:, 2:])  # centred at (0, 0), unrounded


def test_grid_anchor_order_and_count():
    gen = AnchorGenerator()
    sizes = [(100, 152), (50, 76), (25, 38), (13, 19), (7, 10)]
    levels = gen.grid_anchors(sizes)
    assert [len(a) for a in levels] == [h * w * 9 for h, w in sizes]
    a = levels[1]  # stride 16
    w = 76
    # location (i=2, j=5) holds anchors (2*76+5)*9 ... +8, centred at (5*16, 2*16)
    loc = a[(2 * w + 5) * 9:(2 * w + 5) * 9 + 9]
    centres = (loc[:, :2] + loc[:, 2:]) / 2
    torch.testing.assert_close(centres, torch.tensor([[80.0, 32.0]] * 9))
    torch.testing.assert_close(loc - torch.tensor([80.0, 32.0, 80.0, 32.0]), gen.base_anchors[1])


def test_valid_flags_cover_the_image_own_padding_only():
    gen = AnchorGenerator()
    flags = gen.valid_flags([(4, 6)], (24, 40))[0].view(4, 6, 9)
    assert flags[:3, :5].all() and not flags[3].any() and not flags[:, 5].any()


# ---- box coder --------------------------------------------------------------------------------------------

boxes = st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(1, 300), st.floats(1, 300))


@settings(max_examples=200, deadline=None)
@given(anchor=boxes, gt=boxes)
def test_encode_decode_round_trip(anchor, gt):
    a = torch.tensor([[anchor[0], anchor[1], anchor[0] + anchor[2], anchor[1] + anchor[3]]], dtype=torch.float64)
    g = torch.tensor([[gt[0], gt[1], gt[0] + gt[2], gt[1] + gt[3]]], dtype=torch.float64)
    d = encode(a, g).double()
    if d[:, 2:].abs().max() < MAX_RATIO:
        torch.testing.assert_close(decode(a, d), g, atol=1e-2, rtol=1e-4)  # encode works in float32


def test_decode_clamps_and_clips():
    a = torch.tensor([[10.0, 10.0, 30.0, 50.0]])
    out = decode(a, torch.tensor([[0.0, 0.0, 100.0, -100.0]]), max_shape=(40, 25))
    # width = 20 * exp(log(1000/16)) = 1250, clipped to [0, W=25]; height 40 * 16/1000, centre y 30
    torch.testing.assert_close(out, torch.tensor([[0.0, 30 - 0.32, 25.0, 30 + 0.32]]))
    torch.testing.assert_close(encode(a, a), torch.zeros(1, 4))


# ---- post-processing --------------------------------------------------------------------------------------

def test_score_threshold_is_strict_and_nms_is_class_wise():
    b = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60.]])
    s = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.05, 0.06]])
    boxes, scores, labels = filter_and_nms(b, s, score_thr=0.05, nms_iou=0.5, max_per_img=100)
    # box 1 overlaps box 0 (IoU 0.68) in class 0 and goes; box 2 is class 1 and stays; 0.05 is not > 0.05
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.06])
    assert labels.tolist() == [0, 1, 1]
    boxes, scores, _ = filter_and_nms(b, s, score_thr=0.05, nms_iou=0.5, max_per_img=2)
    assert len(scores) == 2


def test_nms_pre_keeps_top_anchors_by_best_class_score_per_level():
    # one level of 2x2 locations, 9 anchors each, 2 classes: 36 anchors; keep the top 3 by max class score
    logits = torch.full((9 * 2, 2, 2), -10.0)
    deltas = torch.zeros(9 * 4, 2, 2)
    # anchor a at location (y, x): class channel a*2 + c; make three anchors strong in different classes
    logits[0 * 2 + 1, 0, 0] = 3.0  # location (0,0) anchor 0 class 1
    logits[4 * 2 + 0, 1, 1] = 2.0  # location (1,1) anchor 4 class 0
    logits[8 * 2 + 1, 0, 1] = 1.0  # location (0,1) anchor 8 class 1
    logits[8 * 2 + 0, 1, 0] = 0.5  # dropped by nms_pre=3
    anchors = AnchorGenerator(strides=[8]).grid_anchors([(2, 2)])
    meta = ImageMeta((128, 128), (128, 128), (128, 128), (1.0, 1.0))
    boxes, scores, labels = detect_single([logits], [deltas], anchors, meta, nms_pre=3, score_thr=0.05)
    assert labels.tolist() == [1, 0, 1]
    torch.testing.assert_close(scores, torch.sigmoid(torch.tensor([3.0, 2.0, 1.0])))
    expected = anchors[0][[0, (1 * 2 + 1) * 9 + 4, (0 * 2 + 1) * 9 + 8]].clamp(0, 128)
    torch.testing.assert_close(boxes, expected)


def test_boxes_rescale_to_original_pixels_before_nms():
    logits = torch.full((9, 1, 1), -10.0)
    logits[3] = 5.0  # ratio 1, scale 4: a 32x32 box centred at (0, 0) -> clipped to [0, 16]
    meta = ImageMeta((50, 100), (100, 200), (128, 224), (2.0, 2.0))
    anchors = AnchorGenerator(strides=[8]).grid_anchors([(1, 1)])
    boxes, _, _ = detect_single([logits], [torch.zeros(36, 1, 1)], anchors, meta, num_classes=1)
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 8.0, 8.0]]))


def test_batched_prediction_equals_one_at_a_time():
    det = Detector(ModelConfig(depth=18, scale=(96, 64), num_classes=3), device="cpu")
    with torch.no_grad():
        det.model.bbox_head.retina_cls.bias.fill_(-1.0)
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(40, 60), (40, 60), (60, 40), (41, 60)]]
    single = [det.predict(im)[0] for im in imgs]
    batched = det.predict(imgs, batch_size=4)
    for a, b in zip(single, batched):
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert (a.labels == b.labels).all()


def test_building_and_running_a_detector_changes_no_process_wide_switch():
    from retinanet.inference.torch_switches import inference_switches

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark)
    det = Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu")
    det.predict(np.zeros((40, 50, 3), np.uint8))
    assert (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark) == before
    # nor does preparing a model for CUDA
    from retinanet.inference.fast import optimize_for_inference

    optimize_for_inference(RetinaNet(ModelConfig(depth=18, num_classes=3)), torch.device("cuda"))
    assert (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark) == before
    # on CUDA in fp32 TF32 is off inside the call only (the flags can be set without a GPU)
    cudnn.allow_tf32, matmul.allow_tf32 = True, True
    try:
        with inference_switches(torch.device("cuda"), "fp32", cudnn_benchmark=True):
            assert not cudnn.allow_tf32 and not matmul.allow_tf32 and cudnn.benchmark
        assert cudnn.allow_tf32 and matmul.allow_tf32 and cudnn.benchmark == before[2]
        with inference_switches(torch.device("cuda"), "bf16"):
            assert cudnn.allow_tf32 and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = before


def test_autotune_switches_cudnns_autotuner_on_for_the_detectors_calls_only():
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark
    seen = []
    det = Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu", autotune=True)
    forward = det.model.forward
    det.model.forward = lambda *a, **k: (seen.append(cudnn.benchmark), forward(*a, **k))[1]
    det.predict(np.zeros((40, 50, 3), np.uint8))
    plain = Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu")
    forward_plain = plain.model.forward
    plain.model.forward = lambda *a, **k: (seen.append(cudnn.benchmark), forward_plain(*a, **k))[1]
    plain.predict(np.zeros((40, 50, 3), np.uint8))
    assert seen == [True, before] and cudnn.benchmark == before
