"""Hostile and degenerate input data for predict, eval, train and bench: each gives one line naming the input
(predict skips it and goes on; eval, train and bench stop), never a traceback or a hang."""
import json
import re
import os
import warnings
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli_inprocess import rdet_here
from retinanet.config import ModelConfig
from retinanet.data.coco import CocoSet
from retinanet.data.images import read_bgr
from retinanet.data.preprocess import planned_meta, rescale_size
from retinanet.errors import DatasetError, ImageError
from tiny_zoo import NAME, write_tiny_zoo

SMALL = ("--size", "128x96")  # a small test scale keeps each run to a few seconds on 2 cores


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, _ = write_tiny_zoo(root)
    return {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}


def _thin(path, w=10000, h=1):
    cv2.imwrite(str(path), np.full((h, w, 3), 128, np.uint8))
    return path


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if not line.startswith("random weights")]
    assert len(lines) == 1 and "Traceback" not in stderr and "unexpected" not in stderr, stderr
    return lines[0]


# --- an image too thin to resize: one rule, every pipeline -------------------------------------------------------

@pytest.mark.parametrize("w, h", [(10000, 1), (1, 10000), (3000, 1)])
def test_a_side_rounding_to_0_pixels_is_an_image_error_in_the_one_resize_rule(w, h):
    with pytest.raises(ImageError, match=rf"^{w}x{h} resizes to 0 pixels on a side: too thin to detect in"):
        rescale_size(w, h)
    with pytest.raises(ImageError, match="too thin"):
        planned_meta(h, w, ModelConfig(depth=18))
    assert rescale_size(1, 1) == (800, 800) and rescale_size(1333, 1) == (1333, 1)  # tiny but resizable


def test_predict_skips_a_too_thin_image_and_detects_the_others(tiny, tmp_path, capsys, monkeypatch):
    thin = _thin(tmp_path / "thin.png")
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    r = rdet_here(capsys, monkeypatch, "predict", NAME, thin, good, "--json", "--out", tmp_path / "out", *SMALL,
                  "--quiet", env=tiny)
    assert r.returncode == 1
    assert _one_line(r.stderr) == f"skipped {thin}: 10000x1 resizes to 0 pixels on a side: too thin to detect in " \
                                  "(scale 128x96)"
    records = json.loads(r.stdout)["images"]
    assert "too thin" in records[0]["error"] and records[1]["error"] is None and records[1]["width"] == 64


def test_eval_train_and_bench_name_the_too_thin_file(tmp_path):
    from retinanet.benchmark.inputs import host_loader
    from retinanet.data.train_data import TrainSet
    from retinanet.evaluation.coco_eval import CocoImages, run_detection

    cfg = ModelConfig(depth=18, num_classes=1)
    thin = _thin(tmp_path / "thin.png")
    tensor, error, image_id = CocoImages([thin], [5], cfg)[0]
    assert tensor is None and image_id == 5 and error.startswith(f"{thin}: 10000x1 resizes to 0 pixels")
    assert CocoImages([thin], [5], cfg, device_normalise=True)[0][1] == error
    with pytest.raises(ImageError, match=rf"^{thin}: 10000x1 resizes to 0 pixels"):
        host_loader(cfg, [thin])(0)

    doc = {"images": [{"id": 5, "file_name": "thin.png", "width": 10000, "height": 40}],
           "categories": [{"id": 1, "name": "a"}],
           "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 100, 1]}]}
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    small = ModelConfig(depth=18, num_classes=1, scale=(64, 64))
    up_front = r"ann.json: image id 5 \(thin.png\): 10000x40 resizes to 0 pixels"  # from the annotated size
    with pytest.raises(DatasetError, match=up_front):
        TrainSet(CocoSet.load(tmp_path / "ann.json", tmp_path), small)
    with pytest.raises(DatasetError, match=up_front):  # before any detection (the detector is never called)
        run_detection(SimpleNamespace(cfg=small), CocoSet.load(tmp_path / "ann.json", tmp_path), workers=0)
    doc["images"][0].update(width=100, height=40)  # the annotation lies: the decoded image is caught when read
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    sample = TrainSet(CocoSet.load(tmp_path / "ann.json", tmp_path), cfg)[(0, False)]
    assert sample.image is None and sample.error.startswith(f"{thin}: 10000x1 resizes to 0 pixels")
# --- files that are not what their name says -------------------------------------------------------------------

def test_a_fifo_named_like_an_image_is_refused_not_waited_on(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="pipe.jpg: not a regular file"):
        read_bgr(tmp_path / "pipe.jpg")  # before the fix: open() waited for a writer forever
    from retinanet.benchmark.inputs import encoded_images

    with pytest.raises(ImageError, match="pipe.jpg: not a regular file"):
        encoded_images([tmp_path / "pipe.jpg"])  # bench --stages: read_bytes() waited the same way
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="dir.jpg: is a directory"):
        read_bgr(tmp_path / "dir.jpg")
    from retinanet.data.sources import video_frames

    os.mkfifo(tmp_path / "pipe.mp4")  # was: FFmpeg's open waited for a writer forever
    assert [f.error for f in video_frames(str(tmp_path / "pipe.mp4"))] == [
        f"{tmp_path / 'pipe.mp4'}: not a regular file (a pipe or device is read as a live stream: --source "
        f"{tmp_path / 'pipe.mp4'})"]


def test_corrupt_exif_is_ignored_silently_as_opencv_does(tmp_path):
    img = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", img)[1].tobytes()
    junk = b"\xff\xe1\x00\x28Exif\x00\x00MM\x00*\x00\x00\x00\x08" + b"\xff" * 24  # an IFD cut short
    (tmp_path / "x.jpg").write_bytes(jpg[:2] + junk + jpg[2:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_bgr(tmp_path / "x.jpg").shape == (48, 64, 3)
    assert not caught  # was: Pillow's UserWarning "Corrupt EXIF data", two lines on stderr


def test_a_header_over_pillows_own_bomb_limit_is_reported_with_its_real_size(tmp_path, monkeypatch):
    import struct
    import zlib

    png = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    ihdr = png.index(b"IHDR")
    png[ihdr + 4:ihdr + 12] = struct.pack(">II", 100000, 100000)
    png[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(png[ihdr:ihdr + 17])))
    (tmp_path / "bomb.png").write_bytes(bytes(png))
    monkeypatch.delenv("RDET_MAX_PIXELS", raising=False)
    with pytest.raises(ImageError, match=r"bomb.png: image too large \(100000x100000 = 10000 megapixels"):
        read_bgr(tmp_path / "bomb.png")  # was: "89478485x2 = 179 megapixels", Pillow's limit, not the image
    monkeypatch.setenv("RDET_MAX_PIXELS", str(10 ** 10))  # above OpenCV's own limit: its refusal, in one line
    with pytest.raises(ImageError, match=r"bomb.png: OpenCV could not decode the image \(pixels <= CV_IO_MAX"):
        read_bgr(tmp_path / "bomb.png")  # was: MemoryError (read(limit) allocated 80 GB), then a cv2.error


def test_a_symlink_loop_is_named_for_what_it_is(tmp_path):
    from retinanet.data.sources import SourceError, resolve_inputs

    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    with pytest.raises(SourceError, match="a.jpg: a symbolic link to nothing"):
        resolve_inputs([str(tmp_path / "a.jpg")])
    with pytest.raises(ImageError, match="a.jpg: cannot be read .Too many levels of symbolic links"):
        read_bgr(tmp_path / "a.jpg")


# --- URLs --------------------------------------------------------------------------------------------------------

def test_url_failures_say_what_happened_and_name_the_url(rdet_env, monkeypatch):
    from zoo.errors import DownloadError
    from zoo.remote import fetch_image_bytes

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(DownloadError, match=r"127.0.0.1:1/x.jpg: cannot download \(127.0.0.1 refused the conn"):
        fetch_image_bytes("http://127.0.0.1:1/x.jpg")  # was "(timed out)", at once: urllib3's class tree
    with pytest.raises(DownloadError, match=r"^https://\[::1/x.jpg: not a valid URL \(Invalid IPv6 URL\)$"):
        fetch_image_bytes("https://[::1/x.jpg")  # was "Invalid IPv6 URL" alone, naming no input


# --- COCO sets and results files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, words", [
    ("[" * 100000 + "]" * 100000, "nests its JSON too deeply to read"),  # was: unexpected RecursionError
    ('{"images": [{"id": ' + "1" * 5000 + "}]}", "is not valid JSON (Exceeds the limit (4300 digits)"),
])
def test_json_the_parser_cannot_take_is_one_line_for_sets_and_results(tmp_path, text, words):
    from retinanet.evaluation.coco_eval import load_results

    (tmp_path / "x.json").write_text(text)
    with pytest.raises(DatasetError, match=rf"^annotation file {tmp_path}/x.json {re.escape(words)}"):
        CocoSet.load(tmp_path / "x.json", tmp_path)
    with pytest.raises(DatasetError, match=rf"^results file {tmp_path}/x.json {re.escape(words)}"):
        load_results(tmp_path / "x.json")
    os.mkfifo(tmp_path / "fifo.json")  # was: read_bytes() waited for a writer forever
    with pytest.raises(DatasetError, match=r"fifo.json: not a regular file \(a device, pipe or socket\)"):
        load_results(tmp_path / "fifo.json")


def test_a_category_record_is_named_in_the_categories_list(tmp_path):
    doc = {"images": [], "categories": [{"id": 3, "name": 5}], "annotations": []}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match=r"category id 3 \(categories\[0\]\): lacks"):  # was 'categorys[0]'
        CocoSet.load(tmp_path / "x.json", tmp_path)


def test_training_drops_a_box_wholly_outside_its_image_instead_of_an_infinite_loss(tmp_path):
    from retinanet.data.train_data import TrainSet

    cv2.imwrite(str(tmp_path / "a.png"), np.full((40, 60, 3), 100, np.uint8))
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
           "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5000, 10, 20, 20]},
                           {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 30, 20, 20]}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    train = TrainSet(CocoSet.load(tmp_path / "x.json", tmp_path), ModelConfig(depth=18, num_classes=2, scale=(60, 40)))
    for flip in (False, True):
        sample = train[(0, flip)]  # the box partly inside is kept, clipped; the one outside is gone
        assert sample.labels.tolist() == [1] and sample.boxes.shape == (1, 4)
    assert sample.boxes.tolist() == [[0.0, 30.0, 10.0, 40.0]]
    # a sweep's finding: with every box outside, training ran on nothing (loss_bbox 0) and wrote a checkpoint
    doc["annotations"][1]["bbox"] = [60, 0, 20, 20]  # touching the right edge: no area inside
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(DatasetError, match="x.json: no box lies inside its image"):
        TrainSet(CocoSet.load(tmp_path / "x.json", tmp_path), ModelConfig(depth=18, num_classes=2, scale=(60, 40)))


# --- videos ------------------------------------------------------------------------------------------------------

def test_broken_videos_are_one_line_each_without_ffmpegs_own_lines(tmp_path, capfd):
    from retinanet.data.sources import Input, frames

    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(tmp_path / "ok.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for _ in range(10):
        writer.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    writer.release()
    data = bytearray((tmp_path / "ok.avi").read_bytes())
    data[len(data) // 3:2 * len(data) // 3:5] = bytes(len(range(len(data) // 3, 2 * len(data) // 3, 5)))
    (tmp_path / "cut.avi").write_bytes(bytes(data))  # frames from a third of the file on zeroed here and there
    (tmp_path / "text.mp4").write_text("not a video\n")
    got = list(frames([Input("video", str(tmp_path / name)) for name in ("cut.avi", "text.mp4")]))
    read, errors = [f for f in got if f.ok], [f.error for f in got if not f.ok]
    assert 0 < len(read) < 10 and all(f.source.endswith("cut.avi") for f in read)
    assert errors[0].startswith(f"{tmp_path / 'cut.avi'}: corrupt after frame {len(read) - 1} of 10 (")
    assert errors[1] == f"{tmp_path / 'text.mp4'}: OpenCV cannot open it as a video or stream"
    assert capfd.readouterr().err == ""  # was: '[mjpeg @ 0x...] error count: 65', 'moov atom not found', ...


def _png_without_pixels(w: int, h: int) -> bytes:
    """A PNG whose chunks and CRCs are all valid (Pillow's verify passes) but whose image data is empty."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize("name, says", [("cut.tif", "TIFF"), ("cut.bmp", "end of input"),
                                        ("cut.ppm", "end of input"), ("cut.jp2", "OpenJPEG2000"),
                                        ("empty.png", "libpng error: Not enough image data")])
def test_a_cut_image_is_one_line_saying_why_without_the_libraries_own_lines(tmp_path, capfd, name, says):
    """A hunt's finding: a truncated TIFF, BMP, PPM or JPEG 2000 (or a PNG with no pixel data) printed OpenCV's,
    libtiff's or libpng's own lines to stderr ('[ERROR:0@3.2] global loadsave.cpp:1390 imdecode_ ...', 'libpng
    error: ...'), up to five, before rdet's one line, which did not say why."""
    from PIL import Image

    path = tmp_path / name
    if name.endswith(".png"):
        path.write_bytes(_png_without_pixels(64, 48))
    else:
        image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
        image.save(path)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    capfd.readouterr()
    with pytest.raises(ImageError) as caught:
        read_bgr(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: OpenCV could not decode the image (") and says in message, message
    assert "\n" not in message and capfd.readouterr().err == ""


# --- --out targets -----------------------------------------------------------------------------------------------

def test_unwritable_out_files_are_one_line_and_inputs_are_never_overwritten(tiny, tmp_path, capsys, monkeypatch):
    image = tmp_path / "in" / "photo.png"
    image.parent.mkdir()
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8))
    kept = image.read_bytes()
    r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--out", image.parent, *SMALL, env=tiny)
    assert r.returncode == 2 and image.read_bytes() == kept  # was: the annotated copy replaced the photo
    assert _one_line(r.stderr) == f"error: --out {image.parent} holds the input {image}: its annotated copy would " \
                                  "overwrite it (give another --out)"
    for blocker, extra in (("predictions.json", ()), ("photo.png", ()), ("labels/photo.txt", ("--save-txt",))):
        out = tmp_path / blocker.replace("/", "_")
        (out / blocker).mkdir(parents=True)  # a directory where rdet writes a file: was 'unexpected ...Error'
        r = rdet_here(capsys, monkeypatch, "predict", NAME, image, "--out", out, *extra, *SMALL, "--quiet",
                      env=tiny)
        assert r.returncode == 1
        assert _one_line(r.stderr) == f"error: cannot write {out / blocker}: Is a directory"
        if blocker != "predictions.json":  # the document is still written, without the image whose files failed
            doc = json.loads((out / "predictions.json").read_text())
            assert doc["interrupted"] is True and doc["images"] == []


@given(w=st.integers(1, 20000), h=st.integers(1, 20000), long_edge=st.integers(1, 2000),
       short_edge=st.integers(1, 2000))
@settings(max_examples=300, deadline=None)
def test_rescale_size_either_refuses_or_gives_sizes_opencv_can_resize_to(w, h, long_edge, short_edge):
    long_edge, short_edge = max(long_edge, short_edge), min(long_edge, short_edge)
    factor = min(long_edge / max(w, h), short_edge / min(w, h))
    exact = (int(w * factor + 0.5), int(h * factor + 0.5))  # mmcv's rounding
    try:
        assert rescale_size(w, h, (long_edge, short_edge)) == exact and min(exact) >= 1
    except ImageError:
        assert min(exact) == 0


def test_an_image_name_held_by_a_directory_or_fifo_is_not_called_missing(tmp_path):
    doc = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
           "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "x.json").write_text(json.dumps(doc))
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").mkdir()
    os.mkfifo(tmp_path / "img" / "b.png")
    with pytest.raises(DatasetError, match=r"2 of 2 images .* are missing \(or not regular files\) in .*a.png, b.png"):
        CocoSet.load(tmp_path / "x.json", tmp_path / "img")


def test_only_the_c_libraries_own_lines_are_taken_from_stderr_the_rest_is_shown(capfd):
    """While a video frame decodes, fd 2 is caught for FFmpeg's and OpenCV's log lines; another thread's output in
    that window (predict reading ahead on CUDA) is shown after it, however it starts."""
    import os

    from retinanet.data.images import c_library_messages
    from retinanet.data.sources import _LOG_LINES

    capfd.readouterr()
    with c_library_messages(keep=_LOG_LINES) as said:
        os.write(2, b"[1].jpg: 3 objects\n[mov,mp4 @ 0x55d0a1] moov atom not found\n[ WARN:0@0.1] cap\nplain\n")
    assert said == ["[mov,mp4 @ 0x55d0a1] moov atom not found", "[ WARN:0@0.1] cap"]
    assert capfd.readouterr().err.splitlines() == ["[1].jpg: 3 objects", "plain"]
