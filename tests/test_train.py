"""Training: the assigner, losses and schedule against hand computations, the data pipeline, initialisation, and
`rdet train` end to end in real subprocesses (resume after Ctrl-C, torchrun with gloo, divergence)."""
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from retinanet.model.anchors import AnchorGenerator
from retinanet.model.assigner import assign
from retinanet.model.checkpoint import CheckpointError, read_checkpoint
from retinanet.data.coco import CocoSet
from retinanet.config import ModelConfig
from retinanet.errors import RetinaNetError
from retinanet.model.losses import retina_loss
from retinanet.model.retinanet import RetinaNet
from retinanet.model.pretrained import initialise, load_imagenet_backbone
from retinanet.training.schedule import StepSchedule, scaled_lr
from retinanet.training.work_dir import earlier_run
from retinanet.data.train_data import GroupedBatches, TrainSet, trainable_ids
from retinanet.training.trainer import Trainer, TrainingDiverged, TrainingEvents, TrainingStopped, TrainOptions
from retinanet.model.reference_layout import reference_state_dict, save_reference_checkpoint
from shapes_data import CLASSES, write_shapes
from tiny_zoo import NAME, free_port, rdet_command, run_rdet, write_tiny_zoo

# A network small enough to train on two CPU cores in seconds: ResNet-18, 64-channel FPN, 2-conv head towers.
# Nothing is frozen: the recipe's frozen stem would stay random without an ImageNet backbone.
TINY = dict(depth=18, fpn_channels=64, head_convs=2, frozen_stages=-1, scale=(160, 128))


# --- assigner -----------------------------------------------------------------------------------------------

def test_assigner_thresholds_and_the_ignore_band():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([
        [0.0, 0, 10, 10],  # IoU 1: positive
        [0.0, 0, 10, 20],  # IoU 0.5: positive (>= pos_iou_thr)
        [0.0, 0, 10, 22.5],  # IoU 0.444: in [0.4, 0.5), ignored
        [0.0, 0, 10, 33.3],  # IoU 0.3: negative
        [50.0, 50, 60, 60],  # IoU 0: negative
    ])
    assert assign(anchors, gt).tolist() == [1, 1, -1, 0, 0]


def test_assigner_low_quality_matches_take_every_tie_and_the_last_box_wins():
    anchors = torch.tensor([
        [200.0, 200, 210, 210],  # IoU 100/900 with box 1: its best, tied ...
        [220.0, 220, 230, 230],  # ... with this one: both become positives despite IoU < 0.4
        [200.0, 200, 205, 205],  # IoU 25/900: negative
        [0.0, 0, 10, 10],  # IoU 1 with box 0, but it is box 2's best match too: box 2 (later) takes it
    ])
    gt = torch.tensor([[0.0, 0, 10, 10], [200.0, 200, 230, 230], [0.0, 0, 10, 30]])
    assert assign(anchors, gt).tolist() == [2, 2, 0, 3]


def test_assigner_without_boxes_makes_everything_background():
    anchors = torch.rand(7, 2).repeat(1, 2) + torch.tensor([0.0, 0, 5, 5])
    assert assign(anchors, torch.zeros(0, 4)).tolist() == [0] * 7


# --- losses against a by-hand reimplementation of the facts sheet ----------------------------------------------

class FixedOutputs(nn.Module):
    """Stands in for the network: returns fixed per-level maps, so the loss can be checked by hand."""

    def __init__(self, cls_maps, reg_maps, num_classes):
        super().__init__()
        self.cfg = ModelConfig(depth=18, num_classes=num_classes)
        self.anchor_generator = AnchorGenerator()
        self.cls = nn.ParameterList(cls_maps)
        self.reg = nn.ParameterList(reg_maps)

    def forward(self, images):
        return list(self.cls), list(self.reg)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _by_hand(cls_maps, reg_maps, gt_boxes, gt_labels, img_shapes, k, alpha=0.25, gamma=2.0):
    """The facts sheet 2.6 step by step in float64 loops: valid flags, assignment, focal, L1, avg_factor."""
    strides = (8, 16, 32, 64, 128)
    anchors = torch.cat(AnchorGenerator().grid_anchors([m.shape[-2:] for m in cls_maps])).double().tolist()
    cls_sum = box_sum = 0.0
    avg = 0
    for i, ((h, w), boxes, labels) in enumerate(zip(img_shapes, gt_boxes, gt_labels)):
        pad_h, pad_w = math.ceil(h / 32) * 32, math.ceil(w / 32) * 32
        rows, valid = [], []
        for m, r, s in zip(cls_maps, reg_maps, strides):
            fh, fw = m.shape[-2:]
            for y in range(fh):
                for x in range(fw):
                    for a in range(9):
                        rows.append((m[i, a * k:(a + 1) * k, y, x].double().tolist(),
                                     r[i, a * 4:(a + 1) * 4, y, x].double().tolist()))
                        valid.append(y < math.ceil(pad_h / s) and x < math.ceil(pad_w / s))
        boxes = boxes.double().tolist()
        idx = [n for n in range(len(anchors)) if valid[n]]
        assigned = {n: -1 for n in idx}
        if not boxes:
            assigned = {n: 0 for n in idx}
        else:
            ious = {n: [_iou(b, anchors[n]) for b in boxes] for n in idx}
            for n in idx:  # steps 2 and 3
                best = max(ious[n])
                if 0 <= best < 0.4:
                    assigned[n] = 0
                if best >= 0.5:
                    assigned[n] = ious[n].index(best) + 1
            for g in range(len(boxes)):  # step 4, in box order
                top = max(ious[n][g] for n in idx)
                for n in idx:
                    if ious[n][g] == top:
                        assigned[n] = g + 1
        positives = 0
        for n, a in assigned.items():
            if a < 0:
                continue
            scores, deltas = rows[n]
            for c in range(k):
                p = 1 / (1 + math.exp(-scores[c]))
                target = a > 0 and labels[a - 1] == c
                cls_sum += (-alpha * (1 - p) ** gamma * math.log(p) if target
                            else -(1 - alpha) * p ** gamma * math.log(1 - p))
            if a > 0:
                positives += 1
                px0, py0, px1, py1 = anchors[n]
                gx0, gy0, gx1, gy1 = boxes[a - 1]
                pw, ph, gw, gh = px1 - px0, py1 - py0, gx1 - gx0, gy1 - gy0
                target = [((gx0 + gx1) - (px0 + px1)) / 2 / pw, ((gy0 + gy1) - (py0 + py1)) / 2 / ph,
                          math.log(gw / pw), math.log(gh / ph)]
                box_sum += sum(abs(d - t) for d, t in zip(deltas, target))
        avg += max(positives, 1)
    return cls_sum / avg, box_sum / avg


def test_loss_matches_the_reference_formulas_valid_flags_and_normalisation():
    k = 2
    g = torch.Generator().manual_seed(0)
    sizes = [(8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]  # a 64x64 padded batch
    cls_maps = [torch.randn(2, 9 * k, h, w, generator=g) for h, w in sizes]
    reg_maps = [0.5 * torch.randn(2, 36, h, w, generator=g) for h, w in sizes]
    model = FixedOutputs(cls_maps, reg_maps, k)
    gt_boxes = [torch.tensor([[5.0, 3, 40, 28], [30, 10, 58, 29]]), torch.zeros(0, 4)]  # image 2: no objects
    gt_labels = [torch.tensor([1, 0]), torch.zeros(0, dtype=torch.long)]
    shapes = [(30, 60), (64, 64)]  # image 1 pads to 32x64 of the 64x64 batch: half of its anchors are invalid
    images = torch.zeros(2, 3, 64, 64)
    losses = retina_loss(model, images, gt_boxes, gt_labels, shapes)
    cls_ref, box_ref = _by_hand(cls_maps, reg_maps, gt_boxes, gt_labels, shapes, k)
    assert losses["loss_cls"].item() == pytest.approx(cls_ref, rel=1e-5)
    assert losses["loss_bbox"].item() == pytest.approx(box_ref, rel=1e-5)
    (losses["loss_cls"] + losses["loss_bbox"]).backward()  # gradients reach the network's outputs
    assert model.cls[0].grad is not None and model.reg[0].grad.abs().sum() > 0


@pytest.mark.parametrize("chunk", [7, 1 << 16])
def test_focal_loss_is_torchvisions_per_element_with_an_exact_gradient(chunk, monkeypatch):
    from torchvision.ops import sigmoid_focal_loss

    import retinanet.model.losses as losses

    monkeypatch.setattr(losses, "CHUNK", chunk)  # the slicing that bounds memory changes nothing
    g = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(50, 4, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.randint(0, 5, (50,), generator=g)  # 4 = background
    weights = (torch.rand(50, generator=g) > 0.3).double()
    targets = torch.nn.functional.one_hot(labels, 5)[:, :4].double()
    expected = (sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2, reduction="none") * weights[:, None]).sum()
    assert losses.weighted_focal_loss_sum(logits, labels, weights).item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.autograd.gradcheck(lambda x: losses.weighted_focal_loss_sum(x, labels, weights), (logits,))


def test_loss_is_a_per_positive_average_over_the_batch():
    torch.manual_seed(0)
    model = RetinaNet(ModelConfig(**TINY, num_classes=3))
    model.init_weights()
    image = torch.randn(1, 3, 128, 160)
    boxes, labels = [torch.tensor([[10.0, 20, 60, 70], [80, 30, 150, 110]])], [torch.tensor([0, 2])]
    one = retina_loss(model, image, boxes, labels, [(128, 160)])
    two = retina_loss(model, image.repeat(2, 1, 1, 1), boxes * 2, labels * 2, [(128, 160)] * 2)
    for key in one:  # twice the sums over twice the positives
        assert two[key].item() == pytest.approx(one[key].item(), rel=1e-5)


# --- schedule -------------------------------------------------------------------------------------------------

def test_schedule_warmup_steps_and_linear_scaling_by_hand():
    s = StepSchedule(lr=0.01, iters_per_epoch=100, steps=(8, 11))
    assert s(0) == pytest.approx(0.01 * 0.001)  # warm-up starts at lr x ratio
    assert s(250) == pytest.approx(0.01 * (1 - 0.5 * 0.999))  # 0.005005
    assert s(499) == pytest.approx(0.01 * (1 - 0.002 * 0.999))
    assert s(500) == s(799) == pytest.approx(0.01)
    assert s(800) == s(1099) == pytest.approx(0.001)  # epoch 8 (0-based): after the first step
    assert s(1100) == s(1199) == pytest.approx(0.0001)
    assert s(100, epoch=8) == pytest.approx(0.001 * (1 - 0.8 * 0.999))  # warm-up on top of the epoch's lr
    assert scaled_lr(0.01, 16, 16) == 0.01
    assert scaled_lr(0.01, 16, 2) == pytest.approx(0.00125)
    assert scaled_lr(0.01, 16, 64) == pytest.approx(0.04)
    two_x = StepSchedule(lr=0.02, iters_per_epoch=10, steps=(16, 22), warmup_iters=0)
    assert [two_x(e * 10) for e in (15, 16, 21, 22, 23)] == pytest.approx([0.02, 0.002, 0.002, 0.0002, 0.0002])


# --- data -----------------------------------------------------------------------------------------------------

def test_grouped_batches_are_homogeneous_deterministic_and_cover_every_image():
    groups = np.array([0, 1, 0, 0, 1, 0, 1, 0])  # 5 portrait-or-square, 3 landscape
    single = GroupedBatches(groups, batch_size=2, seed=1)
    assert single.steps_per_epoch == 3 + 2
    batches = single.epoch_batches(0)
    assert batches == single.epoch_batches(0) and batches != single.epoch_batches(1)
    assert all(len({groups[i] for i, _ in b}) == 1 for b in batches)
    assert {i for b in batches for i, _ in b} == set(range(8))
    single.set_epoch(0, start=3)
    assert list(single) == batches[3:]  # resuming mid-epoch yields exactly the batches not yet seen
    ranks = [GroupedBatches(groups, batch_size=2, rank=r, world_size=2, seed=1) for r in range(2)]
    per_rank = [list(r) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == ranks[0].steps_per_epoch == 2 + 1
    assert {i for rank in per_rank for b in rank for i, _ in b} == set(range(8))
    flips = [f for b in GroupedBatches(np.zeros(400, int), 4).epoch_batches(0) for _, f in b]
    assert 0.4 < np.mean(flips) < 0.6


def test_training_images_are_resized_flipped_and_filtered_as_the_reference(tmp_path):
    ann, images = write_shapes(tmp_path, images=4, extra_empty=True)
    coco = CocoSet.load(ann, images)
    assert trainable_ids(coco) == [1, 2, 3, 4, 5]  # the crowd-only image stays, the unannotated one goes
    cfg = ModelConfig(**{**TINY, "scale": (320, 256)}, num_classes=3)  # every image scales by exactly 2
    data = TrainSet(coco, cfg)
    plain, flipped = data[(0, False)], data[(0, True)]
    boxes, _ = coco.annotations(1)
    assert plain.img_shape == (256, 320)
    assert torch.equal(plain.boxes, torch.from_numpy(boxes) * 2)
    w = plain.img_shape[1]
    assert torch.equal(flipped.boxes[:, [0, 2]], w - plain.boxes[:, [2, 0]])
    assert torch.equal(flipped.image, plain.image.flip(-1))
    crowd_only = data[(4, False)]
    assert crowd_only.boxes.shape == (0, 4)  # trained on as all background


# --- initialisation -------------------------------------------------------------------------------------------

def test_imagenet_backbones_load_from_torchvision_and_detectron_names(tmp_path):
    from torchvision.models import resnet18

    net = resnet18()
    imagenet = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": {f"module.{k}": v for k, v in imagenet.items()}}, tmp_path / "tv.pth")
    model = RetinaNet(ModelConfig(depth=18, num_classes=3))
    load_imagenet_backbone(model, tmp_path / "tv.pth")
    assert torch.equal(model.backbone.layer3[1].conv2.weight, net.layer3[1].conv2.weight)
    assert torch.equal(model.backbone.bn1.running_var, net.bn1.running_var)

    detectron = {"conv1_w": net.conv1.weight, "res_conv1_bn_s": net.bn1.weight, "res_conv1_bn_b": net.bn1.bias,
                 "pred_w": torch.zeros(1000, 512)}
    for s, layer in enumerate([net.layer1, net.layer2, net.layer3, net.layer4]):
        for b, block in enumerate(layer):
            for n, branch in ((1, "2a"), (2, "2b")):
                detectron[f"res{s + 2}_{b}_branch{branch}_w"] = getattr(block, f"conv{n}").weight
                detectron[f"res{s + 2}_{b}_branch{branch}_bn_s"] = getattr(block, f"bn{n}").weight
                detectron[f"res{s + 2}_{b}_branch{branch}_bn_b"] = getattr(block, f"bn{n}").bias
            if block.downsample is not None:
                detectron[f"res{s + 2}_{b}_branch1_w"] = block.downsample[0].weight
                detectron[f"res{s + 2}_{b}_branch1_bn_s"] = block.downsample[1].weight
                detectron[f"res{s + 2}_{b}_branch1_bn_b"] = block.downsample[1].bias
    torch.save({k: v.detach().clone() for k, v in detectron.items()}, tmp_path / "caffe.pth")
    model = RetinaNet(ModelConfig(depth=18, num_classes=3))
    load_imagenet_backbone(model, tmp_path / "caffe.pth")
    assert torch.equal(model.backbone.layer2[0].downsample[1].weight, net.layer2[0].downsample[1].weight)
    assert torch.equal(model.backbone.layer4[1].conv1.weight, net.layer4[1].conv1.weight)
    assert torch.equal(model.backbone.layer4[1].bn1.running_mean, torch.zeros(512))  # affine channels: identity
    with pytest.raises(CheckpointError, match="does not fit"):
        load_imagenet_backbone(RetinaNet(ModelConfig(depth=34, num_classes=3)), tmp_path / "tv.pth")


def test_fine_tuning_keeps_everything_but_a_classifier_of_other_classes(tmp_path):
    sd = reference_state_dict(depth=18, num_classes=3, seed=5)
    save_reference_checkpoint(tmp_path / "zoo.pth", sd, classes=CLASSES)
    same = RetinaNet(ModelConfig(depth=18, num_classes=3, class_names=CLASSES))
    assert "all weights" in initialise(same, tmp_path / "zoo.pth")
    assert torch.equal(same.bbox_head.retina_cls.bias, sd["bbox_head.retina_cls.bias"])
    other = RetinaNet(ModelConfig(depth=18, num_classes=2, class_names=("cat", "dog")))
    assert "except the classification layer" in initialise(other, tmp_path / "zoo.pth")
    assert torch.equal(other.bbox_head.cls_convs[3].conv.weight, sd["bbox_head.cls_convs.3.conv.weight"])
    assert torch.equal(other.backbone.conv1.weight, sd["backbone.conv1.weight"])
    assert torch.allclose(other.bbox_head.retina_cls.bias, torch.full((18,), -math.log(99)))
    assert 0.008 < other.bbox_head.retina_cls.weight.std().item() < 0.012


def test_amp_on_a_cpu_without_native_bf16_is_refused_in_one_line(tmp_path):
    from retinanet.inference.fast import cpu_has_bf16

    ann, images = write_shapes(tmp_path, images=2)

    def make():
        return Trainer(ModelConfig(**TINY, num_classes=3, class_names=CLASSES), CocoSet.load(ann, images),
                       tmp_path / "w", TrainOptions(amp=True, workers=0))

    if cpu_has_bf16():
        assert make().precision == "bf16"
    else:
        with pytest.raises(RetinaNetError, match="bf16"):
            make()


# --- the trainer in process -----------------------------------------------------------------------------------

class Recorder(TrainingEvents):
    def __init__(self):
        self.records = []

    def iteration(self, record):
        self.records.append(record)


def test_training_lowers_the_loss(tmp_path):
    ann, images = write_shapes(tmp_path / "data", images=8, seed=2, portrait_every=0)
    cfg = ModelConfig(**TINY, num_classes=3, class_names=CLASSES)
    rec = Recorder()
    Trainer(cfg, CocoSet.load(ann, images), tmp_path / "w", TrainOptions(epochs=4, batch_size=2, lr=0.01,
            warmup_iters=4, clip_grad=10, workers=0, keep_last=1), reporter=rec).run()
    assert sorted(p.name for p in (tmp_path / "w").glob("*.pth")) == ["epoch_4.pth", "latest.pth"]
    assert [r["global_iter"] for r in rec.records] == list(range(1, 17))
    first, last = rec.records[:4], rec.records[-4:]  # the first and the last epoch: the same images
    assert np.mean([r["loss"] for r in last]) < 0.97 * np.mean([r["loss"] for r in first])
    assert np.mean([r["loss_bbox"] for r in last]) < 0.9 * np.mean([r["loss_bbox"] for r in first])


def test_a_signal_during_an_epochs_save_stops_after_the_save(tmp_path, monkeypatch):
    """A sweep's finding: SIGTERM or Ctrl-C while epoch_N.pth was written cut the write short (its temporary file
    removed), so the finished epoch was lost and nothing said so."""
    import signal

    import retinanet.training.trainer as trainer_module
    from cli.signals import stopping_like_ctrl_c

    ann, images = write_shapes(tmp_path / "data", images=4, portrait_every=0)
    real_write = trainer_module.write_atomically

    def signalled_while_writing(obj, path):
        if path.name.startswith("epoch_"):
            os.kill(os.getpid(), signal.SIGTERM)  # delivered at once: the handler runs before the write
        real_write(obj, path)

    monkeypatch.setattr(trainer_module, "write_atomically", signalled_while_writing)
    cfg = ModelConfig(**TINY, num_classes=3, class_names=CLASSES)
    trainer = Trainer(cfg, CocoSet.load(ann, images), tmp_path / "w", TrainOptions(epochs=2, workers=0))
    with stopping_like_ctrl_c(), pytest.raises(TrainingStopped) as stopped:  # as under the CLI
        trainer.run()
    assert stopped.value.signum == signal.SIGTERM
    assert stopped.value.message.startswith("stopped after epoch 1 of 2; saved ") and "--resume" in stopped.value.message
    assert os.readlink(tmp_path / "w" / "latest.pth") == "epoch_1.pth"
    assert read_checkpoint(tmp_path / "w" / "epoch_1.pth")["meta"]["epoch"] == 1
    assert not list((tmp_path / "w").glob("*.tmp"))


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import retinanet.training.trainer as trainer_module

    ann, images = write_shapes(tmp_path / "data", images=4, portrait_every=0)
    calls = []

    def nan_in_epoch_two(*args):
        losses = retina_loss(*args)
        calls.append(1)
        return {k: v * float("nan") for k, v in losses.items()} if len(calls) > 2 else losses

    monkeypatch.setattr(trainer_module, "retina_loss", nan_in_epoch_two)
    cfg = ModelConfig(**TINY, num_classes=3, class_names=CLASSES)
    trainer = Trainer(cfg, CocoSet.load(ann, images), tmp_path / "w", TrainOptions(epochs=3, workers=0))
    with pytest.raises(TrainingDiverged, match="non-finite.*epoch 2, iteration 1.*epoch_1.pth"):
        trainer.run()
    assert os.readlink(tmp_path / "w" / "latest.pth") == "epoch_1.pth"
    assert not (tmp_path / "w" / "epoch_2.pth").exists()
    assert read_checkpoint(tmp_path / "w" / "latest.pth")["meta"]["epoch"] == 1
    last = json.loads((tmp_path / "w" / "log.jsonl").read_text().splitlines()[-1])
    assert last["mode"] == "diverged" and last["loss_cls"] == "nan"


# --- rdet train, end to end -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    manifest, ckpt = write_tiny_zoo(root)
    return {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}, ckpt


def _train_args(data, work, *extra):
    ann, images = data
    return ["train", NAME, "--ann", ann, "--images", images, "--work-dir", work, "--device", "cpu", *extra]


def test_rdet_train_writes_checkpoints_logs_and_metrics_that_predict_loads(tmp_path, zoo_env):
    env, ckpt = zoo_env
    train = write_shapes(tmp_path / "train", images=4, extra_empty=True)
    val_ann, val_images = write_shapes(tmp_path / "val", images=2, seed=1)
    work = tmp_path / "work"
    r = run_rdet(*_train_args(train, work, "--init", ckpt, "--epochs", "1", "--size", "96x96", "--workers", "1",
                              "--val-ann", val_ann, "--val-images", val_images, "--json-log"), env_extra=env)
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]  # stdout: JSON lines and nothing else
    start, train_records, val, done = records[0], records[1:-2], records[-2], records[-1]
    assert start["mode"] == "start" and start["lr"] == pytest.approx(0.00125)  # 0.01 x 2 / 16
    assert start["init"].startswith("all weights from") and start["images"] == 5  # the crowd-only image counts
    assert [t["global_iter"] for t in train_records] == [1, 2, 3]  # 4 landscape + 1 portrait image, 2 per batch
    for t in train_records:
        assert t["lr"] == pytest.approx(0.00125 * (1 - (1 - (t["global_iter"] - 1) / 500) * 0.999))
        assert {"loss_cls", "loss_bbox", "loss", "time", "data_time", "memory"} <= set(t)
    assert val["mode"] == "val" and len([k for k in val if k.startswith(("bbox_mAP", "AR_"))]) == 12
    assert done["mode"] == "done" and done["metrics"]["bbox_mAP"] == val["bbox_mAP"]
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pth", "latest.pth", "log.jsonl"]
    assert os.readlink(work / "latest.pth") == "epoch_1.pth"
    assert len(earlier_run(work)) == 3  # --overwrite knows a real run's files for rdet's (test_overwrite.py)
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert [x["mode"] for x in log] == ["start", "train", "train", "train", "val"]
    full = torch.load(work / "latest.pth", weights_only=True)  # plain containers only
    assert {"state_dict", "meta", "optimizer", "train_state"} <= set(full)
    assert full["meta"]["CLASSES"] == list(CLASSES) and full["meta"]["epoch"] == 1 and full["meta"]["iter"] == 3
    assert full["meta"]["model"] == NAME and all(k.startswith(("backbone.", "neck.", "bbox_head."))
                                                 for k in full["state_dict"])
    r = run_rdet("predict", val_images / "shape_0000.png", "--model", NAME, "--weights", work / "latest.pth",
                 "--score-thr", "0.001", "--json", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert {d["class"] for d in json.loads(r.stdout)["images"][0]["detections"]} <= set(CLASSES)


def test_fine_tuning_on_other_classes_through_the_cli(tmp_path, zoo_env):
    env, ckpt = zoo_env
    train = write_shapes(tmp_path / "train", images=2, classes=("disc", "box"), category_ids=(1, 2))
    work = tmp_path / "work"
    r = run_rdet(*_train_args(train, work, "--init", ckpt, "--epochs", "1", "--size", "64x64", "--workers", "0"),
                 env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "except the classification layer (3 classes there, 2 here)" in r.stderr
    assert "lr 0.00125 = 0.01 x 2/16 images per step" in r.stderr
    meta = read_checkpoint(work / "latest.pth")["meta"]
    assert meta["CLASSES"] == ["disc", "box"]
    r = run_rdet("predict", train[1] / "shape_0000.png", "--model", NAME, "--weights", work / "latest.pth",
                 "--score-thr", "0.001", "--json", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert {d["class"] for d in json.loads(r.stdout)["images"][0]["detections"]} <= {"disc", "box"}


def test_the_default_init_downloads_the_imagenet_backbone_and_keeps_frozen_parts_fixed(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    imagenet = resnet18().state_dict()
    backbone = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet, backbone)
    sha = hashlib.sha256(backbone.read_bytes()).hexdigest()
    manifest = tmp_path / "zoo.toml"
    manifest.write_text(f"""schema = 1
[[model]]
name = "tiny18_in"
depth = 18
style = "pytorch"
num_classes = 3
url = "{(tmp_path / 'unused.pth').as_uri()}"
sha256 = "00000000"
pretrained_url = "{backbone.as_uri()}"
pretrained_sha256 = "{sha}"
""")
    ann, images = write_shapes(tmp_path / "data", images=2, portrait_every=0)
    work = tmp_path / "w"
    r = run_rdet("train", "tiny18_in", "--ann", ann, "--images", images, "--work-dir", work, "--epochs", "1",
                 "--size", "64x64", "--workers", "0", "--lr", "0.01", "--warmup-iters", "0",
                 env_extra={"RDET_ZOO": str(manifest), "RDET_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "initialisation: ImageNet backbone from" in r.stderr
    assert (tmp_path / "cache" / "resnet18-imagenet.pth").is_file()  # fetched and verified through the zoo
    trained = read_checkpoint(work / "latest.pth")["state_dict"]
    for key, value in imagenet.items():
        if key.startswith("fc."):
            continue
        mine = trained[f"backbone.{key}"]
        if key.startswith(("conv1.", "bn1.", "layer1.")) or "running_" in key or "num_batches" in key:
            assert torch.equal(mine, value), key  # frozen stem and stage 1; BN statistics never updated
    assert not torch.equal(trained["backbone.layer2.0.conv1.weight"], imagenet["layer2.0.conv1.weight"])
    assert not torch.equal(trained["backbone.layer3.1.bn2.weight"], imagenet["layer3.1.bn2.weight"])  # affine trains


def _wait_for_records(log, count, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and sum('"train"' in line for line in log.read_text().splitlines()) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run ended or stalled before {count} iterations: {proc.poll()}")


def test_ctrl_c_saves_and_resume_reaches_the_same_weights(tmp_path, zoo_env):
    env, _ = zoo_env
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RDET_")}, **env}
    data = write_shapes(tmp_path / "data", images=16, seed=4)  # 8 iterations per epoch
    args = ["--init", "none", "--epochs", "2", "--size", "96x96", "--workers", "0", "--seed", "3", "--lr", "0.004",
            "--warmup-iters", "5", "--quiet"]
    straight = run_rdet(*_train_args(data, tmp_path / "straight", *args), env_extra=env)
    assert straight.returncode == 0, straight.stderr

    work = tmp_path / "interrupted"
    proc = subprocess.Popen(rdet_command() + [str(a) for a in _train_args(data, work, *args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_records(work / "log.jsonl", 3, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr
    assert "interrupted: stopped at epoch" in stderr and "--resume" in stderr
    assert os.readlink(work / "latest.pth") == "interrupted.pth"
    state = torch.load(work / "interrupted.pth", weights_only=True)["train_state"]
    assert state["iter"] == state["epoch"] * 8 + state["iter_in_epoch"]

    resumed = run_rdet(*_train_args(data, work, *args, "--resume"), env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    assert not (work / "interrupted.pth").exists()
    a = torch.load(tmp_path / "straight" / "epoch_2.pth", weights_only=True)
    b = torch.load(work / "epoch_2.pth", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    momentum_a = [s["momentum_buffer"] for s in a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b))
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert sorted(x["global_iter"] for x in log if x["mode"] == "train") == list(range(1, 17))  # none twice


def test_a_diverging_run_exits_3_with_one_line(tmp_path, zoo_env):
    env, _ = zoo_env
    data = write_shapes(tmp_path / "data", images=4, portrait_every=0)
    r = run_rdet(*_train_args(data, tmp_path / "w", "--init", "none", "--lr", "1e6", "--warmup-iters", "0",
                              "--epochs", "3", "--size", "64x64", "--workers", "0", "--quiet"), env_extra=env)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the loss became non-finite")


def test_bad_input_is_one_line_and_exit_2(tmp_path, zoo_env):
    env, _ = zoo_env
    data = write_shapes(tmp_path / "data", images=2)
    r = run_rdet(*_train_args(data, tmp_path / "w", "--resume"), env_extra=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: nothing to resume: {tmp_path / 'w' / 'latest.pth'} does not exist (train without --resume first)"]
    (tmp_path / "stopped").mkdir()  # a run stopped before its first checkpoint: a plain run is refused (not empty)
    (tmp_path / "stopped" / "log.jsonl").write_text('{"mode": "start"}\n')
    r = run_rdet(*_train_args(data, tmp_path / "stopped", "--resume"), env_extra=env)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: nothing to resume: the run in {tmp_path / 'stopped'} stopped before its first checkpoint (it has a "
        "log, no latest.pth); start it again with --overwrite"]
    r = run_rdet(*_train_args(data, tmp_path / "w"), env_extra=env)  # imagenet init: tiny18 names no backbone
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "no pretrained_url" in r.stderr and "--init none" in r.stderr


def test_data_root_means_the_coco_layout_with_val2017_when_present(tmp_path):
    from cli.common import Fail
    from cli.train_cmd import _dataset_files

    (tmp_path / "annotations").mkdir()
    train, val = _dataset_files(tmp_path, None, None, None, None)
    assert train == (tmp_path / "annotations" / "instances_train2017.json", tmp_path / "train2017") and val is None
    (tmp_path / "annotations" / "instances_val2017.json").write_text("{}")
    (tmp_path / "val2017").mkdir()
    assert _dataset_files(tmp_path, None, None, None, None)[1] == (
        tmp_path / "annotations" / "instances_val2017.json", tmp_path / "val2017")
    with pytest.raises(Fail, match="not both"):
        _dataset_files(tmp_path, tmp_path / "a.json", None, None, None)
    with pytest.raises(Fail, match="go together"):
        _dataset_files(None, tmp_path / "a.json", tmp_path, tmp_path / "v.json", None)


def test_torchrun_two_processes_with_gloo_rank_0_alone_writes(tmp_path, zoo_env):
    env, _ = zoo_env
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RDET_")}, **env, "OMP_NUM_THREADS": "1"}
    data = write_shapes(tmp_path / "data", images=8)  # 6 landscape + 2 portrait: 3 + 1 steps of 2 x 1 images
    work = tmp_path / "w"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "cli.main",
           *[str(a) for a in _train_args(data, work, "--init", "none", "--epochs", "1", "--batch-size", "1",
                                         "--size", "64x64", "--workers", "0", "--json-log")]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    stdout = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["mode"] for x in stdout].count("start") == 1  # only rank 0 reports
    assert sorted(p.name for p in work.iterdir()) == ["epoch_1.pth", "latest.pth", "log.jsonl"]
    log = [json.loads(line) for line in (work / "log.jsonl").read_text().splitlines()]
    assert log[0]["world_size"] == 2 and log[0]["global_batch"] == 2 and log[0]["lr"] == pytest.approx(0.00125)
    assert [x["global_iter"] for x in log if x["mode"] == "train"] == [1, 2, 3, 4]
    assert read_checkpoint(work / "latest.pth")["meta"]["iter"] == 4


# --- learning, slow -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_tiny_retinanet_learns_the_shapes(tmp_path):
    """From scratch (no ImageNet weights on a CPU): 96 images, 24 epochs of 24 iterations, about 2-3 minutes on
    2 cores; the validation box AP50 reaches about 0.65."""
    ann, images = write_shapes(tmp_path / "train", images=96, seed=0)
    val_ann, val_images = write_shapes(tmp_path / "val", images=24, seed=1)
    cfg = ModelConfig(**TINY, num_classes=3, class_names=CLASSES, lr_steps=(20,))
    trainer = Trainer(cfg, CocoSet.load(ann, images), tmp_path / "w",
                      TrainOptions(epochs=24, batch_size=4, lr=0.01, warmup_iters=50, clip_grad=10, workers=0,
                                   keep_last=1),
                      val_set=CocoSet.load(val_ann, val_images))
    result = trainer.run()
    assert result.metrics["bbox_mAP_50"] >= 0.5, result.metrics
