"""Sync-free post-processing gives exactly the detections of the exact path (postprocess.filter_and_nms)."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retinanet.inference.postprocess import filter_and_nms
from retinanet.inference.sync_free import Pending, fixed_filter_and_nms, unpack


def clustered(seed: int, anchors: int, classes: int, clusters: int):
    """Boxes in a few tight clusters (long suppression chains) with some zero-size ones, random scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(clusters, 2, generator=g) * 300
    which = torch.randint(0, clusters, (anchors,), generator=g)
    xy = centres[which] + torch.randn(anchors, 2, generator=g) * 4
    wh = 20 + torch.rand(anchors, 2, generator=g) * 30
    wh[torch.rand(anchors, generator=g) < 0.05] = 0  # clipped away at the border
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(anchors, classes, generator=g) ** 3
    return boxes, scores


def fixed(boxes, scores, capacity=4096, rounds=12, **kw) -> Pending:
    return Pending(fixed_filter_and_nms(boxes, scores, capacity=capacity, rounds=rounds, **kw), kw)


def same(got, exact):
    for a, b in zip(got, exact):
        assert a.shape == b.shape and torch.equal(a, b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), anchors=st.integers(1, 300), classes=st.integers(1, 6),
       clusters=st.integers(1, 8), thr=st.sampled_from([0.05, 0.3, 0.9]), iou=st.sampled_from([0.3, 0.5, 0.7]),
       max_per_img=st.sampled_from([0, 5, 100]))
def test_fixed_size_nms_equals_the_exact_path(seed, anchors, classes, clusters, thr, iou, max_per_img):
    boxes, scores = clustered(seed, anchors, classes, clusters)
    kw = {"score_thr": thr, "nms_iou": iou, "max_per_img": max_per_img}
    pending = fixed(boxes, scores, capacity=2048, rounds=64, **kw)
    assert unpack(pending.packed)[4]  # capacity and rounds suffice here: the fixed-size result itself is checked
    same(pending.read(), filter_and_nms(boxes, scores, **kw))


def test_overflow_and_unconverged_fall_back_to_the_exact_path():
    boxes, scores = clustered(7, 400, 4, 3)
    exact = filter_and_nms(boxes, scores)
    small = fixed(boxes, scores, capacity=50)  # far more than 50 pairs pass 0.05
    unconverged = fixed(boxes, scores, rounds=0)  # tight clusters: chains longer than 0
    assert not unpack(small.packed)[4] and not unpack(unconverged.packed)[4]
    same(small.read(), exact)
    same(unconverged.read(), exact)


def test_no_candidate_gives_empty_results():
    boxes, scores = clustered(1, 50, 3, 2)
    b, s, lab = fixed(boxes, scores * 0.01).read()
    assert b.shape == (0, 4) and s.shape == (0,) and lab.shape == (0,)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 200), row_block=st.integers(1, 64),
       iou=st.sampled_from([0.3, 0.5, 0.7]))
def test_the_upper_triangle_in_row_blocks_is_the_full_matrixs(seed, n, row_block, iou):
    from retinanet.inference.sync_free import pairwise_suppression, suppression_matrix

    boxes, _ = clustered(seed, n, 1, 3)
    full = pairwise_suppression(boxes, boxes, iou).triu(1)
    blocked = suppression_matrix(boxes, iou, row_block=row_block)
    assert blocked.dtype == torch.float16 and torch.equal(blocked.bool(), full) and full.any() == blocked.any()
