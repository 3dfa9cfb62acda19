"""`rdet predict` on more than image files: videos (OpenCV writes them here), a file read as a live stream and
stopped with Ctrl-C, http(s) URLs from a 127.0.0.1 server, and list files; plus the output writers."""
import json
import os
import signal
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from retinanet.data.sources import Input, SourceError, frames, resolve_inputs
from retinanet.inference.writers import crop_boxes, yolo_lines
from cli_inprocess import rdet_here
from tiny_zoo import NAME, rdet_command, write_tiny_zoo


SMALL = ("--size", "128x96")  # a small test scale keeps each run to a few seconds on 2 cores


def _write_video(path, n_frames, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert writer.isOpened()
    for _ in range(n_frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def _frames_of(path):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return out
        out.append(frame)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    manifest, _ = write_tiny_zoo(root)
    return root, {"RDET_ZOO": str(manifest), "RDET_CACHE": str(root / "cache")}


# --- resolving inputs, in-process -------------------------------------------------------------------------


def test_list_files_resolve_relative_to_themselves_and_bad_inputs_fail_up_front(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "sub" / "a.png")
    _write_video(tmp_path / "clip.avi", 2)
    listing = tmp_path / "list.txt"
    listing.write_text("# my inputs\n\nsub/a.png\n  clip.avi  \nhttps://example.org/x.jpg\n")
    assert resolve_inputs([str(listing)]) == [Input("image", str(tmp_path / "sub" / "a.png")),
                                              Input("video", str(tmp_path / "clip.avi")),
                                              Input("url", "https://example.org/x.jpg")]
    (tmp_path / "bad.txt").write_text("sub/a.png\nsub/missing.png\n")
    with pytest.raises(SourceError, match=r"missing.png: no such file \(listed in .*bad.txt\)"):
        resolve_inputs([str(tmp_path / "bad.txt")])
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(SourceError, match="names no inputs"):
        resolve_inputs([str(tmp_path / "empty.txt")])
    with pytest.raises(SourceError, match="--source 0"):
        resolve_inputs(["0"])
    (tmp_path / "none").mkdir()
    with pytest.raises(SourceError, match="no image or video files"):
        resolve_inputs([str(tmp_path / "none")])
    os.mkfifo(tmp_path / "fifo.txt")  # was: reading it waited for a writer forever
    with pytest.raises(SourceError, match=r"fifo.txt: not a regular file \(a device, pipe or socket\)"):
        resolve_inputs([str(tmp_path / "fifo.txt")])


def test_video_frames_follow_the_stride_and_are_opencvs_decode(tmp_path):
    clip = _write_video(tmp_path / "clip.avi", 7)
    got = list(frames([Input("video", str(clip))], vid_stride=3))
    decoded = _frames_of(clip)
    assert [f.index for f in got] == [0, 3, 6]
    for f in got:
        assert f.ok and f.fps == pytest.approx(10.0) and np.array_equal(f.image, decoded[f.index])
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    bad = list(frames([Input("video", str(tmp_path / "fake.mp4"))]))
    assert len(bad) == 1 and not bad[0].ok and "fake.mp4" in bad[0].error


def test_yolo_lines_and_crops():
    boxes = np.array([[10, 20, 30, 60], [-5, 0, 200, 50]], np.float32)
    lines = yolo_lines(boxes, np.array([0.9, 0.5]), np.array([2, 0]), 100, 50, with_score=True)
    assert lines[0] == "2 0.200000 0.700000 0.200000 0.600000 0.900000"  # y clipped to 50
    assert lines[1] == "0 0.500000 0.500000 1.000000 1.000000 0.500000"  # clipped to the image
    assert yolo_lines(boxes[:1], [0.9], [2], 100, 50)[0].count(" ") == 4  # no score unless asked
    image = np.arange(50 * 100 * 3, dtype=np.uint8).reshape(50, 100, 3)
    crops = crop_boxes(image, np.array([[10.5, 20.2, 30.1, 60.0], [150, 0, 160, 10]]))
    assert crops[0].shape == (30, 21, 3) and np.array_equal(crops[0], image[20:50, 10:31])
    assert crops[1].size == 0


def test_image_urls_are_size_limited_and_one_line_errors(http_server, rdet_env):
    from zoo.errors import DownloadError
    from zoo.remote import fetch_image_bytes

    url = http_server.add("/big.png", b"x" * 5000)
    assert fetch_image_bytes(url, max_bytes=5000) == b"x" * 5000
    with pytest.raises(DownloadError, match="limit"):
        fetch_image_bytes(url, max_bytes=4999)
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_image_bytes(http_server.url("/nothing.png"))
    with pytest.raises(DownloadError, match="offline"):
        fetch_image_bytes(url, offline=True)
    with pytest.raises(DownloadError, match="only http"):
        fetch_image_bytes("file:///etc/passwd")


def test_an_image_url_that_trickles_or_never_ends_stops_within_the_limits(http_server, rdet_env, monkeypatch):
    import time

    from zoo.errors import DownloadError
    from zoo.remote import fetch_image_bytes

    # a byte every 20 ms: each read is well within RDET_TIMEOUT, so only a rate or a deadline can end it
    url = http_server.add("/slow.png", b"x" * 100_000, chunk=1, throttle=0.02)
    for settings, message in [
            ({"RDET_MIN_RATE": "1000", "RDET_RATE_WINDOW": "0.3"}, r"too slow: .* under RDET_MIN_RATE"),
            ({"RDET_MIN_RATE": "0", "RDET_DEADLINE": "1"}, r"not read within 1 s \(RDET_DEADLINE\)")]:
        for name, value in settings.items():
            monkeypatch.setenv(name, value)
        began = time.monotonic()
        with pytest.raises(DownloadError, match=r"slow\.png: " + message):
            fetch_image_bytes(url)
        assert time.monotonic() - began < 5


def test_a_compressed_image_body_is_limited_as_it_is_decoded(http_server, rdet_env):
    import gzip
    import tracemalloc

    from zoo.errors import DownloadError
    from zoo.remote import fetch_image_bytes

    url = http_server.add("/bomb.png", gzip.compress(bytes(50_000_000), 9), headers={"Content-Encoding": "gzip"})
    tracemalloc.start()
    try:
        with pytest.raises(DownloadError, match=r"bomb\.png: more than the 1\.0 MB limit for an image"):
            fetch_image_bytes(url, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000  # the 50 MB it decodes to is never held at once


def test_credentials_in_an_image_url_are_never_printed(http_server, rdet_env):
    from zoo.errors import DownloadError
    from zoo.remote import fetch_image_bytes

    url = http_server.url("/nothing.png").replace("http://", "http://user:s3cret@")
    with pytest.raises(DownloadError, match="HTTP 404") as caught:
        fetch_image_bytes(url)
    assert "s3cret" not in str(caught.value) and "***@" in str(caught.value)


# --- rdet predict, as a user runs it ---------------------------------------------------------------------


def test_video_and_its_frame_as_an_image_give_the_same_detections(tiny, tmp_path, capsys, monkeypatch):
    root, env = tiny
    clip = _write_video(tmp_path / "clip.avi", 5)
    cv2.imwrite(str(tmp_path / "frame2.png"), _frames_of(clip)[2])  # lossless: the same pixels
    out = tmp_path / "out"
    r = rdet_here(capsys, monkeypatch, "predict", NAME, clip, tmp_path / "frame2.png", "--vid-stride", "2",
                  "--out", out, "--json", "--save-txt", *SMALL, env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    records = doc["images"]
    assert [(x["path"], x["frame"]) for x in records] == [(str(clip), 0), (str(clip), 2), (str(clip), 4),
                                                          (str(tmp_path / "frame2.png"), None)]
    assert records[1]["detections"] and records[1]["detections"] == records[3]["detections"]
    assert doc == json.loads((out / "predictions.json").read_text())
    lines = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
    assert lines == records[:3]
    video = _frames_of(out / "clip.mp4")
    assert len(video) == 3 and video[0].shape == (48, 64, 3)
    assert (out / "labels" / "clip_2.txt").read_text().count("\n") == len(records[1]["detections"])
    assert (out / "frame2.png").is_file()


def test_a_file_read_as_a_stream_stops_cleanly_on_ctrl_c(tiny, tmp_path):
    root, env = tiny
    clip = _write_video(tmp_path / "long.avi", 2000)
    out = tmp_path / "out"
    full_env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("RDET_")}
    full_env.update(env)
    # a test runner started in the background inherits an ignored SIGINT, which Python then never turns into
    # KeyboardInterrupt: give rdet the default disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen(rdet_command() + ["predict", NAME, "--source", str(clip), "--json", "--out", str(out),
                                              *SMALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = [json.loads(proc.stdout.readline()) for _ in range(2)]  # JSON Lines as frames arrive
    assert [s["frame"] for s in seen] == [0, 1] and seen[0]["path"] == str(clip)
    proc.send_signal(signal.SIGINT)
    rest, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    frames_out = len(seen) + len(rest.splitlines())
    assert 2 <= frames_out < 2000
    assert len((out / "long.jsonl").read_text().splitlines()) == frames_out
    assert len(_frames_of(out / "long.mp4")) == frames_out  # the video was finalised
    assert len(json.loads((out / "predictions.json").read_text())["images"]) == frames_out


@pytest.mark.parametrize("writer", ["writes a video", "never writes"])
def test_a_named_pipe_read_as_a_stream_is_read_once_and_ctrl_c_stops_its_wait(tiny, tmp_path, writer):
    """A hunt's finding: `--source FIFO` hung for ever, deaf to Ctrl-C and SIGTERM. The check before the model
    loads opened the pipe and closed it, taking the writer's bytes (and the writer) with it, so the real open
    waited in C for a writer that never came; and a pipe whose writer sends nothing kept OpenCV's open in C."""
    import threading
    import time

    root, env = tiny
    pipe = tmp_path / "live.avi"
    os.mkfifo(pipe)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RDET_")}
    full_env.update(env)
    proc = subprocess.Popen(rdet_command() + ["predict", NAME, "--source", str(pipe), "--json", *SMALL],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if writer == "writes a video":
            clip = _write_video(tmp_path / "clip.avi", 4).read_bytes()
            threading.Thread(target=lambda: pipe.write_bytes(clip), daemon=True).start()
            lines, stderr = proc.communicate(timeout=60)
            assert proc.returncode == 0, stderr
            assert [json.loads(line)["frame"] for line in lines.splitlines()] == [0, 1, 2, 3]
        else:
            began = time.monotonic()
            while True:  # a writer that connects once rdet has the pipe open, and never writes
                try:
                    held = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
                    break
                except OSError:  # ENXIO: no reader yet
                    assert time.monotonic() - began < 60 and proc.poll() is None, proc.stderr.read()
                    time.sleep(0.1)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=20)
            os.close(held)
            assert proc.returncode in (0, 130) and "Traceback" not in stderr and "unexpected" not in stderr, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_urls_and_list_files(tiny, tmp_path, http_server, capsys, monkeypatch):
    root, env = tiny
    img = tmp_path / "local.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(img)
    url = http_server.add("/photos/remote.jpg", img.read_bytes()).replace("http://", "http://user:s3cret@")
    long = http_server.add("/photos/" + "a" * 300 + ".jpg", img.read_bytes())  # longer than a file name can be
    missing = http_server.url("/photos/gone.jpg")
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"local.jpg\n{url}\n{missing}\n{long}\n")
    out = tmp_path / "out"
    r = rdet_here(capsys, monkeypatch, "predict", NAME, listing, "--json", "--out", out, *SMALL, env=env)
    assert r.returncode == 1  # one input failed
    records = json.loads(r.stdout)["images"]
    assert [x["path"] for x in records] == [str(img), url.replace("user:s3cret@", "***@"), missing, long]
    assert records[0]["detections"] == records[1]["detections"] and records[0]["detections"]
    assert records[2]["error"] and "404" in records[2]["error"] and records[2]["detections"] == []
    assert (out / "remote.jpg").is_file() and "gone.jpg" in r.stderr and "Traceback" not in r.stderr
    assert "s3cret" not in r.stderr + (out / "predictions.json").read_text() + (out / "coco_results.json").read_text()
    [shortened] = [p.name for p in out.iterdir() if p.name.startswith("aaa")]  # not 'File name too long' for all
    assert shortened.endswith(".jpg") and len(shortened) <= 150


@pytest.mark.parametrize("source", ["rtsp://user:s3cret@127.0.0.1:1/cam", "nosuch://user:s3cret@cam/x"])
def test_a_stream_urls_credentials_are_never_printed(source, capsys, monkeypatch):
    r = rdet_here(capsys, monkeypatch, "predict", "--source", source)
    assert r.returncode == 2 and "s3cret" not in r.stderr and "://***@" in r.stderr and "Traceback" not in r.stderr


def test_opencvs_log_is_set_to_errors_in_opencv_4_and_5():
    """OpenCV 5 has cv2.utils.logging, 4.10 only cv2.setLogLevel (a video input failed with AttributeError
    there); an OpenCV with neither is left as it is."""
    from types import SimpleNamespace

    from retinanet.data.sources import _log_errors_only

    levels = []
    v5 = SimpleNamespace(utils=SimpleNamespace(logging=SimpleNamespace(LOG_LEVEL_ERROR=2, setLogLevel=levels.append)))
    v4 = SimpleNamespace(utils=SimpleNamespace(), setLogLevel=levels.append)
    for cv2 in (v5, v4, SimpleNamespace()):
        _log_errors_only(cv2)
    assert levels == [2, 2]
