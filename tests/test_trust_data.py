"""Issue #14 findings 8 (images read whole before any size check, bombs, corrupt JPEGs accepted) and 9 (COCO
fields not validated), reproduced with real files and shown fixed."""
import json
import os
import struct
import time

import cv2
import numpy as np
import pytest

from retinanet.data.coco import CocoSet
from retinanet.data.images import DEFAULT_MAX_PIXELS, decode_bgr, read_bgr
from retinanet.errors import DatasetError, ImageError


def _jpeg(w: int = 300, h: int = 200, seed: int = 0) -> bytes:
    img = (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _with_size_in_header(data: bytes, w: int, h: int) -> bytes:
    """The JPEG with its SOF0 frame header claiming w x h (what a 631-byte bomb does)."""
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + struct.pack(">HH", h, w) + data[sof + 9:]


def _corrupt_mid_scan(data: bytes) -> bytes:
    """Entropy-coded bytes overwritten in the middle of the scan; the end-of-image marker stays."""
    out = bytearray(data)
    sos = data.index(b"\xff\xda")
    for i in range(sos + 200, sos + 400, 7):
        if out[i] != 0xFF and out[i - 1] != 0xFF:
            out[i] = 0
    return bytes(out)


@pytest.fixture
def no_image_env(monkeypatch):
    for var in ("RDET_MAX_PIXELS", "RDET_ALLOW_CORRUPT_IMAGES"):
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------------------------------------------- finding 8

def test_8_huge_sparse_file_is_refused_before_it_is_read(tmp_path, no_image_env):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.truncate(10 * 1024 ** 3)  # 10 GB, sparse: nothing is written
    began = time.monotonic()
    with pytest.raises(ImageError, match="more than an image within RDET_MAX_PIXELS"):
        read_bgr(path)
    assert time.monotonic() - began < 1


def test_8_device_file_is_refused(no_image_env):
    with pytest.raises(ImageError, match="not a regular file"):
        read_bgr("/dev/zero")


def test_8_tiny_jpeg_claiming_132_megapixels_is_refused_before_decoding(tmp_path, no_image_env):
    bomb = _with_size_in_header(_jpeg(16, 16), 12000, 11000)
    assert len(bomb) < 1000
    (tmp_path / "bomb.jpg").write_bytes(bomb)
    with pytest.raises(ImageError, match=r"12000x11000 = 132 megapixels, over the 89 MP limit"):
        read_bgr(tmp_path / "bomb.jpg")


def test_8_pixel_limit_is_configurable(monkeypatch, no_image_env):
    data = _jpeg(300, 200)
    monkeypatch.setenv("RDET_MAX_PIXELS", str(300 * 200 - 1))
    with pytest.raises(ImageError, match=r"300x200 = 0.06 megapixels, over the 0.06 MP limit"):
        decode_bgr(data, "x.jpg")
    monkeypatch.setenv("RDET_MAX_PIXELS", str(300 * 200))
    assert decode_bgr(data, "x.jpg").shape == (200, 300, 3)
    monkeypatch.setenv("RDET_MAX_PIXELS", "lots")
    with pytest.raises(ImageError, match="RDET_MAX_PIXELS must be a positive whole number"):
        decode_bgr(data, "x.jpg")
    assert DEFAULT_MAX_PIXELS == 89_478_485  # Pillow's


def test_8_jpeg_corrupted_mid_scan_is_an_error_unless_allowed(monkeypatch, capfd, no_image_env):
    data = _corrupt_mid_scan(_jpeg())
    assert data.endswith(b"\xff\xd9")
    with pytest.raises(ImageError, match=r"x.jpg: corrupt JPEG data \(Corrupt JPEG data"):
        decode_bgr(data, "x.jpg")
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # libjpeg's own line is caught, not printed
    monkeypatch.setenv("RDET_ALLOW_CORRUPT_IMAGES", "1")
    assert decode_bgr(data, "x.jpg").shape == (200, 300, 3)
    assert "warning: x.jpg: corrupt JPEG data, decoded anyway" in capfd.readouterr().err


def test_8_clean_jpeg_still_decodes_exactly_as_opencv(no_image_env):
    data = _jpeg()
    np.testing.assert_array_equal(decode_bgr(data), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


# ---------------------------------------------------------------------------------------------------- finding 9

GOOD = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
               {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
    "categories": [{"id": 1, "name": "cat"}],
    "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40], "area": 1200,
                     "iscrowd": 0},
                    {"id": 11, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]}],
}


def _set(tmp_path, mutate):
    data = json.loads(json.dumps(GOOD))
    mutate(data)
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data, allow_nan=True))
    return CocoSet.load(path, tmp_path, check_files=False)


def _ann(key, value, i=0):
    return lambda d: d["annotations"][i].__setitem__(key, value)


def _img(key, value, i=1):
    return lambda d: d["images"][i].__setitem__(key, value)


@pytest.mark.parametrize("mutate, words", [
    (_ann("area", "big"), ["annotation id 10", "'area'"]),
    (_ann("iscrowd", "no"), ["annotation id 10", "'iscrowd'"]),
    (_ann("iscrowd", 2), ["annotation id 10", "'iscrowd'"]),
    (_img("width", "640"), ["image id 2", "'width'"]),
    (_img("height", -5), ["image id 2", "'height'"]),
    (_ann("bbox", [1, 2, float("nan"), 4], 1), ["annotation id 11", "finite"]),
    (_ann("bbox", [1, 2, float("inf"), 4], 1), ["annotation id 11", "finite"]),
    (_ann("bbox", [1, 2, -3, 4], 1), ["annotation id 11", "negative width or height"]),
    (_ann("bbox", [1e300, 2, 3, 4], 1), ["annotation id 11", "far outside"]),
    (_ann("image_id", [1]), ["annotation id 10", "unknown image"]),
    (_ann("id", 11), ["annotation id 11 (annotations[1])", "duplicate annotation id"]),
    (_img("id", 1), ["image id 1 (images[1])", "duplicate image id"]),
    (lambda d: d["categories"].append({"id": 1, "name": "dog"}), ["category id 1", "duplicate category id"]),
    (_img("file_name", 7), ["image id 2", "'file_name'"]),
])
def test_9_coco_fields_are_validated_with_the_offending_id(tmp_path, mutate, words):
    with pytest.raises(DatasetError) as info:
        _set(tmp_path, mutate)
    message = str(info.value)
    assert "\n" not in message and "ann.json" in message
    for word in words:
        assert word in message


def test_9_valid_set_loads_and_missing_ids_do_not_collide(tmp_path):
    coco = _set(tmp_path, lambda d: d["annotations"][1].pop("id"))
    assert sorted(coco.coco.anns) == [10, 11]
    boxes, labels = coco.annotations(1)
    assert boxes.tolist() == [[1, 2, 31, 42]] and labels.tolist() == [0]
    assert os.path.basename(coco.path(2)) == "b.jpg"


# ---------------------------------------------------------------------------------------------------- finding 12

class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_12_code_in_a_checkpoint_is_refused_without_torchs_advice_to_run_it(tmp_path):
    import torch

    from retinanet.errors import CheckpointError
    from retinanet.model.checkpoint import read_checkpoint

    marker = tmp_path / "ran"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _RunsCode(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "evil.pth")
    message = str(info.value)
    assert "refused" in message and "system" in message and "\n" not in message
    assert "weights_only" not in message and not marker.exists()
