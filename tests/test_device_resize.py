"""resize_uint8 gives cv2.resize(INTER_LINEAR)'s bytes exactly: random sizes through the pipeline's rescale_size,
arbitrary up/down mixes, and the edge cases (single pixels and rows, exact 2x, identity, odd row lengths)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from retinanet.data.device_resize import matches_opencv, resize_uint8
from retinanet.data.preprocess import rescale_size
from retinanet.errors import ImageError


def _image(h: int, w: int, seed: int, kind: str = "random") -> np.ndarray:
    """Random pixels, or the extremes (all 255 tests the top of the fixed-point range, a 0/255 checkerboard the
    largest jumps)."""
    if kind == "white":
        return np.full((h, w, 3), 255, np.uint8)
    if kind == "checker":
        board = ((np.add.outer(np.arange(h), np.arange(w)) % 2) * 255).astype(np.uint8)
        return np.stack([board, 255 - board, board], axis=-1)
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_like_opencv(img: np.ndarray, new_w: int, new_h: int, device: str = "cpu"):
    expected = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    got = resize_uint8(torch.from_numpy(img).to(device), new_w, new_h).cpu().numpy()
    assert got.shape == expected.shape and got.dtype == np.uint8
    diff = np.argwhere(got != expected)
    assert diff.size == 0, f"{img.shape[1]}x{img.shape[0]} -> {new_w}x{new_h}: {len(diff)} bytes differ, " \
                           f"first at {diff[0].tolist()}: {got[tuple(diff[0])]} vs {expected[tuple(diff[0])]}"


@settings(max_examples=100, deadline=None)
@given(w=st.integers(1, 700), h=st.integers(1, 700), long_edge=st.integers(1, 1333), short_edge=st.integers(1, 800),
       seed=st.integers(0, 2**32 - 1))
def test_pipeline_sizes_equal_opencv(w, h, long_edge, short_edge, seed):
    """Keep-ratio targets as the test pipeline computes them, at random scales up to 1333x800."""
    try:
        new_w, new_h = rescale_size(w, h, (long_edge, short_edge))
    except ImageError:  # a side would round to 0 pixels: the pipeline refuses such an image (cv2 cannot resize it)
        assume(False)
    _assert_like_opencv(_image(h, w, seed), new_w, new_h)


@settings(max_examples=100, deadline=None)
@given(w=st.integers(1, 300), h=st.integers(1, 300), new_w=st.integers(1, 400), new_h=st.integers(1, 400),
       kind=st.sampled_from(["random", "random", "white", "checker"]), seed=st.integers(0, 2**32 - 1))
def test_any_sizes_equal_opencv(w, h, new_w, new_h, kind, seed):
    """Each axis up or down independently, including aspect changes the pipeline never makes."""
    _assert_like_opencv(_image(h, w, seed, kind), new_w, new_h)


EDGE_CASES = [
    ((1, 1), (1, 1)), ((1, 1), (5, 3)), ((1, 1), (1333, 800)),
    ((1, 9), (4, 3)), ((9, 1), (3, 4)), ((1, 700), (1, 800)), ((700, 1), (1333, 2)),  # single rows and columns
    ((40, 20), (20, 10)), ((41, 21), (20, 10)), ((640, 480), (320, 240)),  # exact 2x down (OpenCV's INTER_AREA)
    ((20, 10), (40, 20)), ((333, 250), (666, 500)),  # exact 2x up
    ((60, 30), (20, 10)), ((80, 40), (20, 10)),  # exact 3x and 4x down
    ((37, 29), (37, 29)), ((1333, 800), (1333, 800)),  # identity
    *[((w, 7), (w + 3, 11)) for w in (2, 3, 5, 6, 7, 10, 11, 13, 21, 43)],  # row lengths 3(w+3): any SIMD tail
    ((640, 480), (1067, 800)), ((480, 640), (800, 1067)), ((500, 375), (1067, 800)),  # COCO to the test scale
    ((1333, 801), (1332, 800)), ((2000, 1200), (1333, 800)),  # slight and large downscales
]


@pytest.mark.parametrize("kind", ["random", "white", "checker"])
@pytest.mark.parametrize("src,dst", EDGE_CASES, ids=[f"{s[0]}x{s[1]}-{d[0]}x{d[1]}" for s, d in EDGE_CASES])
def test_edge_cases_equal_opencv(src, dst, kind):
    _assert_like_opencv(_image(src[1], src[0], seed=src[0] * 1000 + src[1], kind=kind), *dst)


def test_the_installed_opencv_is_proven_to_agree():
    assert matches_opencv() is True


def test_refuses_what_it_cannot_resize():
    with pytest.raises(ValueError, match="HxWxC uint8"):
        resize_uint8(torch.zeros(4, 4, 3, dtype=torch.float32), 2, 2)
    with pytest.raises(ValueError, match="HxWxC uint8"):
        resize_uint8(torch.zeros(4, 4, dtype=torch.uint8), 2, 2)
    with pytest.raises(ValueError, match="at least 1"):
        resize_uint8(torch.zeros(4, 4, 3, dtype=torch.uint8), 0, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("src,dst", [((640, 480), (1067, 800)), ((17, 13), (34, 26)), ((33, 21), (16, 10)),
                                     ((1, 1), (5, 3)), ((2000, 1200), (1333, 800))])
def test_on_the_gpu_equals_opencv(src, dst):
    _assert_like_opencv(_image(src[1], src[0], seed=7), *dst, device="cuda")
