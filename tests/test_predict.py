"""Reading and preparing images as the reference does, and `rdet predict` end to end in a real subprocess."""
import io
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from retinanet import ModelConfig
from retinanet.errors import ImageError
from retinanet.data.images import decode_bgr, read_bgr
from retinanet.data.preprocess import padded_size, prepare, rescale_size
from tiny_zoo import CLASSES, NAME, run_rdet, write_tiny_zoo


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- resize rounding --------------------------------------------------------------------------------------


def test_resize_rounding_matches_the_reference():
    # 640x427: factor min(1333/640, 800/427) = 1.87353; 640 * 1.87353 = 1199.06 -> 1199, 427 * f = 800
    assert rescale_size(640, 427) == (1199, 800)
    assert rescale_size(427, 640) == (800, 1199)
    assert rescale_size(2000, 500) == (1333, 333)  # the long edge binds: 500 * 0.6665 = 333.25
    assert padded_size(800, 1199) == (800, 1216)


@given(st.integers(16, 4000), st.integers(16, 4000))
def test_resize_fits_the_scale_and_keeps_the_ratio(w, h):
    nw, nh = rescale_size(w, h)
    assert max(nw, nh) <= 1333 and min(nw, nh) <= 800
    assert max(nw, nh) == 1333 or min(nw, nh) == 800  # one limit is reached
    assert abs(nw / nh - w / h) <= (w / h) * (1 / nh + 1 / nw) + 1e-9


def test_prepare_keeps_separate_width_and_height_factors():
    img = np.zeros((427, 640, 3), np.uint8)
    tensor, meta = prepare(img, ModelConfig(depth=18))
    assert tuple(tensor.shape) == (3, 800, 1199)
    assert meta.img_shape == (800, 1199) and meta.pad_shape == (800, 1216) and meta.ori_shape == (427, 640)
    assert meta.scale_factor == pytest.approx((1199 / 640, 800 / 427))


# --- decoding odd inputs ------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, :30] = (255, 0, 0)  # left half red
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rotated.jpg"
    im.save(path, exif=exif, quality=95)
    bgr = read_bgr(path)
    assert bgr.shape == (60, 40, 3)  # displayed upright: taller than wide
    assert bgr[5, 20, 2] > 200 and bgr[55, 20, 2] < 50  # the red half is now on top


def test_gray_rgba_palette_and_16_bit_become_three_channel_bgr():
    gray = decode_bgr(_png(Image.new("L", (8, 6), 77)))
    assert gray.shape == (6, 8, 3) and (gray == 77).all()
    rgba = decode_bgr(_png(Image.new("RGBA", (8, 6), (10, 20, 30, 0))))
    assert rgba.shape == (6, 8, 3) and rgba[0, 0].tolist() == [30, 20, 10]  # alpha dropped, not composited
    pal = Image.new("P", (8, 6), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    assert decode_bgr(_png(pal))[0, 0].tolist() == [50, 100, 200]
    deep = decode_bgr(_png(Image.fromarray(np.full((6, 8), 0x1234, np.uint16))))
    assert deep.shape == (6, 8, 3) and (deep == 0x12).all()  # 16-bit scaled to 8 by the top byte


def test_other_formats_decode_exactly_as_opencv_reads_the_file(tmp_path):
    """The header check (Pillow) must not refuse what the reference's cv2.imread reads, nor change its pixels:
    CMYK and progressive JPEG, WebP, TIFF, BMP, LA PNG (checked against the reference on real detections too)."""
    import cv2

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[:, :20] = (200, 40, 90)  # flat areas as well as noise
    image = Image.fromarray(rgb)
    files = {"cmyk.jpg": (image.convert("CMYK"), {"quality": 90}), "progressive.jpg": (image, {"progressive": True}),
             "lossy.webp": (image, {"quality": 80}), "plain.tiff": (image, {}), "plain.bmp": (image, {}),
             "gray_alpha.png": (image.convert("LA"), {})}
    for name, (im, options) in files.items():
        path = tmp_path / name
        im.save(path, **options)
        expected = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert expected is not None and np.array_equal(read_bgr(path), expected), name


def test_16_bit_pil_images_are_scaled_as_the_same_file_is_read():
    """A sweep's finding: Pillow's convert("RGB") clips 16-bit values to 255, so a 16-bit PIL image gave a white
    image's detections; an image of unknown range is refused rather than guessed."""
    from retinanet.data.images import to_bgr

    values = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1365
    from_file = decode_bgr(_png(Image.fromarray(values)))
    assert from_file[..., 0].tolist() == (values >> 8).tolist()
    for image in (Image.open(io.BytesIO(_png(Image.fromarray(values)))), Image.fromarray(values),
                  Image.fromarray(values.astype(np.int32))):  # modes I;16 and I
        assert np.array_equal(to_bgr(image), from_file), image.mode
    for unknown in (Image.fromarray(np.full((6, 8), 0.5, np.float32)), Image.fromarray(np.full((6, 8), -1, np.int32))):
        with pytest.raises(ImageError, match=f"mode {unknown.mode}"):
            to_bgr(unknown)


def test_encoded_bytes_are_one_image_decoded_as_its_file_and_non_images_are_one_line(tmp_path):
    from retinanet.data.images import image_list, to_bgr

    path = tmp_path / "p.png"
    path.write_bytes(_png(Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))))
    data = path.read_bytes()
    for encoded in (data, bytearray(data), memoryview(data)):
        assert len(image_list(encoded)) == 1  # one file, not a sequence of byte values
        assert np.array_equal(to_bgr(encoded), read_bgr(path))
    assert len(image_list([data, str(path)])) == 2
    with pytest.raises(ImageError, match="^<bytes>: not an image file"):
        to_bgr(b"not an image")
    for wrong in (None, 5):
        with pytest.raises(ImageError, match=f"^cannot read an image from a {type(wrong).__name__}: give a path"):
            image_list(wrong)


def _bad_files(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (64, 48), (120, 30, 200)).save(good, format="JPEG")
    files = {
        "empty.jpg": b"",
        "truncated.jpg": good.getvalue()[: len(good.getvalue()) // 2],
        "notes.png": b"this is not an image\n" * 10,
        "broken.png": _png(Image.new("RGB", (64, 48)))[:-20],
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 10000)).save(bomb)  # 200 MP in a few kB
    return [tmp_path / n for n in files] + [bomb]


def test_bad_files_raise_one_line_image_errors(tmp_path):
    for path in _bad_files(tmp_path):
        with pytest.raises(ImageError) as info:
            read_bgr(path)
        assert path.name in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ImageError, match="no such file"):
        read_bgr(tmp_path / "missing.jpg")


# --- rdet predict, as a user runs it ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, ckpt = write_tiny_zoo(root)
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(64, 48), (48, 64)]):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(images / f"img{i}.jpg")
    env = {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}
    return root, images, ckpt, env


def test_predict_json_is_exactly_the_documented_schema(tiny):
    root, images, _, env = tiny
    r = run_rdet("predict", images, "--model", NAME, "--json", "--batch-size", "2", env_extra=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # stdout holds the JSON document and nothing else
    assert set(doc) == {"schema", "model", "score_thr", "classes", "provenance", "images"} and doc["model"] == NAME
    assert doc["schema"] == "rdet-predict/1" and doc["score_thr"] == 0.3 and doc["classes"] is None
    assert doc["provenance"]["weights"]["source"] == "zoo" and doc["provenance"]["scale"] == [1333, 800]
    assert [p["path"] for p in doc["images"]] == [str(images / "img0.jpg"), str(images / "img1.jpg")]
    assert all(set(p) == {"path", "frame", "width", "height", "error", "detections"} and p["error"] is None
               and p["frame"] is None for p in doc["images"])
    assert [(p["width"], p["height"]) for p in doc["images"]] == [(64, 48), (48, 64)]
    dets = doc["images"][0]["detections"]
    assert 0 < len(dets) <= 100
    assert set(dets[0]) == {"bbox", "score", "label", "category_id", "class"}
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True) and min(scores) > 0.3
    for d in dets:
        x1, y1, x2, y2 = d["bbox"]
        assert 0 <= x1 <= x2 <= 64 and 0 <= y1 <= y2 <= 48
        assert d["class"] == CLASSES[d["label"]] and d["category_id"] == d["label"] + 1


def test_predict_skips_bad_files_reports_them_and_exits_1(tiny, tmp_path):
    root, images, _, env = tiny
    bad = _bad_files(tmp_path)
    r = run_rdet("predict", images / "img0.jpg", *bad, "--model", NAME, "--json", env_extra=env)
    assert r.returncode == 1
    doc = json.loads(r.stdout)  # failed images are listed too, with their error
    assert [p["path"] for p in doc["images"]] == [str(images / "img0.jpg")] + [str(p) for p in bad]
    assert doc["images"][0]["error"] is None and all(p["error"] and not p["detections"] for p in doc["images"][1:])
    assert "Traceback" not in r.stderr
    for path in bad:
        assert path.name in r.stderr


def test_predict_out_writes_annotated_images_and_coco_results(tiny, tmp_path):
    root, images, ckpt, env = tiny
    out = tmp_path / "out"
    r = run_rdet("predict", str(images / "*.jpg"), "--model", NAME, "--weights", ckpt, "--out", out,
                 env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "img0.jpg" in r.stdout and "mean time per image" in r.stdout
    with Image.open(out / "img0.jpg") as im:
        assert im.size == (64, 48)
    results = json.loads((out / "coco_results.json").read_text())
    assert results and set(results[0]) == {"image_id", "file_name", "category_id", "bbox", "score"}
    assert json.loads((out / "predictions.json").read_text())["schema"] == "rdet-predict/1"
    assert all(len(r["bbox"]) == 4 and r["bbox"][2] >= 0 for r in results)


def test_predict_unknown_model_is_one_line_and_exit_2(tiny):
    r = run_rdet("predict", "--model", "r51_fpn_1x", env_extra=tiny[3])
    assert r.returncode == 2
    assert "r51_fpn_1x" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_predict_bundled_photo_with_random_weights(tmp_path):
    r = run_rdet("predict", "--model", "r50_fpn_1x", "--random-weights", "--out", tmp_path / "o", "--json",
                 env_extra={"RDET_CACHE": str(tmp_path / "cache"), "RDET_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["images"][0]["path"].endswith("astronaut.jpg")
    assert (tmp_path / "o" / "astronaut.jpg").is_file()


def test_predict_files_yields_detections_or_a_one_line_error_with_the_decoded_rgb_image(tmp_path):
    from retinanet import Detector

    det = Detector(ModelConfig(depth=18, num_classes=3, scale=(64, 64)), device="cpu")
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200  # red: a BGR mix-up would show
    Image.fromarray(rgb).save(tmp_path / "red.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    results = list(det.predict_files([tmp_path / "bad.png", tmp_path / "red.png"], score_thr=0.0, batch_size=2))
    assert [r.path for r in results] == [str(tmp_path / "bad.png"), str(tmp_path / "red.png")]
    bad, good = results
    assert bad.detections is None and "bad.png" in bad.error and "\n" not in bad.error
    assert good.error is None and np.array_equal(good.image, rgb) and good.seconds > 0
    (direct,) = det.predict(str(tmp_path / "red.png"), score_thr=0.0)
    assert np.array_equal(good.detections.boxes, direct.boxes)
    assert (good.detections.width, good.detections.height) == (30, 20)
    # a sweep's finding: 1.5 or NaN gave nothing without a word, batch size 0 ran as 1, '0.5' failed deep inside
    for bad_call in ({"score_thr": 1.5}, {"score_thr": float("nan")}, {"score_thr": "0.5"}, {"batch_size": 0},
                     {"batch_size": 2.5}):
        with pytest.raises(ValueError, match=f"^{next(iter(bad_call))} must be"):
            det.predict(rgb, **bad_call)
        with pytest.raises(ValueError, match=f"^{next(iter(bad_call))} must be"):
            next(det.predict_files([tmp_path / "red.png"], **bad_call))
