"""What `rdet predict` can read: image files, directories, globs, http(s) URLs, text files listing any of these,
video files (every Nth frame) and live streams (a webcam index, rtsp://..., or a file read as a stream).

Every input becomes a sequence of `Frame`s, each a decoded BGR image or the one-line error that stopped it, so
that one unreadable input is reported and the others go on. Decoding is OpenCV's throughout (cv2.imdecode for
images, cv2.VideoCapture for videos and streams): the reference decodes with OpenCV, and so the detections match.

The engine never touches the network itself: URLs are fetched through a `fetch_url(url) -> bytes` callable that
the caller provides (the CLI passes the zoo's size-limited downloader).
"""
from __future__ import annotations

import os
import re
import stat
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from retinanet.data.globbing import recursive_glob
from retinanet.data.images import LIBRARY_LINES as _LOG_LINES, c_library_messages, decode_bgr, read_bgr
from retinanet.errors import ImageError, RetinaNetError
from retinanet.file_check import FileProblem, FileTooLarge, read_small_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pbm", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".flv", ".ts",
                  ".gif"}
LIST_SUFFIXES = {".txt", ".lst"}
STREAM_SCHEMES = ("rtsp://", "rtmp://", "rtsps://", "udp://", "tcp://")
URL_SCHEMES = ("http://", "https://")

FetchURL = Callable[[str], bytes]


class SourceError(RetinaNetError):
    """An input that names nothing readable (a missing file, a glob without matches, an empty list file)."""


@dataclass
class Frame:
    """One image to detect on: a still image (`index` None) or a frame of a video or stream."""

    source: str  # the input as the user named it: path, URL, video path or stream
    image: np.ndarray | None  # HxWx3 uint8 BGR, None when `error` says why not
    index: int | None = None  # frame number within a video or stream (0-based, before --vid-stride)
    error: str | None = None
    fps: float | None = None  # of the video or stream this frame comes from

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Input:
    """One resolved input: `kind` is image, url, video or stream."""

    kind: str
    location: str


def is_url(text: str) -> bool:
    return text.lower().startswith(URL_SCHEMES)


def is_stream(text: str) -> bool:
    return text.isdigit() or text.lower().startswith(STREAM_SCHEMES)


def _kind_of_file(path: str) -> str:
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES else "image"


def resolve_inputs(args: list[str]) -> list[Input]:
    """Files as given (images or videos by suffix), directories as their image and video files (sorted), globs
    as their matches (sorted), URLs as they are, and list files (.txt) as the inputs they list, one per line
    (relative paths are relative to the list file; blank lines and lines starting with # are skipped).

    Raises SourceError for what names nothing at all, before any model is loaded: a missing file, a glob that
    matches nothing, a directory or list file without inputs.
    """
    found: list[Input] = []
    for arg in args:
        found += _resolve(arg, listed_in=None)
    return list(dict.fromkeys(found))


def _resolve(arg: str, listed_in: Path | None) -> list[Input]:
    if is_url(arg):
        return [Input("url", arg)]
    if is_stream(arg) and not os.path.exists(arg):
        raise SourceError(f"{arg}: a stream or webcam is read with --source {arg}")
    if listed_in is not None and not os.path.isabs(arg):
        arg = str(listed_in.parent / arg)
    if os.path.isdir(arg):
        files = sorted(p for p in Path(arg).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        if not files:
            raise SourceError(f"{arg}: no image or video files in this directory")
        return [Input(_kind_of_file(str(p)), str(p)) for p in files]
    if any(c in arg for c in "*?[") and not os.path.exists(arg):
        matches = [m for m in recursive_glob(arg) if os.path.isfile(m)]  # symlink loops end, each file once
        if not matches:
            raise SourceError(f"no file matches '{arg}'")
        return [Input(_kind_of_file(m), m) for m in matches]
    if not os.path.exists(arg):
        where = f" (listed in {listed_in})" if listed_in else ""
        what = "a symbolic link to nothing (broken, or a loop)" if os.path.islink(arg) else "no such file"
        raise SourceError(f"{arg}: {what}{where}")
    if Path(arg).suffix.lower() in LIST_SUFFIXES:
        if listed_in is not None:
            raise SourceError(f"{arg}: a list file inside a list file ({listed_in}) is not read")
        return _read_list(Path(arg))
    return [Input(_kind_of_file(arg), arg)]


MAX_LIST_BYTES = 1 << 28  # a list of a million inputs is ~100 MB; larger is not a list (or /dev/zero)


def _read_list(path: Path) -> list[Input]:
    try:
        lines = read_small_file(path, MAX_LIST_BYTES).decode("utf-8").splitlines()
    except FileTooLarge as e:
        raise SourceError(f"{path}: {e.size} bytes is too large for a list file") from None
    except FileProblem as e:  # a FIFO named list.txt: its open would wait for a writer forever
        raise SourceError(f"{path}: {e}") from None
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: cannot read the list file ({e})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise SourceError(f"{path}: the list file names no inputs")
    found: list[Input] = []
    for entry in entries:
        found += _resolve(entry, listed_in=path)
    return found


def frames(inputs: list[Input], fetch_url: FetchURL | None = None, vid_stride: int = 1) -> Iterator[Frame]:
    """The frames of every input in order; an input that cannot be read yields one Frame with its error."""
    for item in inputs:
        if item.kind == "image":
            yield _still(item.location, lambda: read_bgr(item.location))
        elif item.kind == "url":
            yield _url_frame(item.location, fetch_url)
        elif item.kind == "video":
            yield from video_frames(item.location, vid_stride)
        else:
            yield from stream_frames(item.location, vid_stride)


def _still(source: str, read: Callable[[], np.ndarray]) -> Frame:
    try:
        return Frame(source, read())
    except ImageError as e:
        return Frame(source, None, error=str(e))


def _url_frame(url: str, fetch_url: FetchURL | None) -> Frame:
    if fetch_url is None:
        return Frame(url, None, error=f"{url}: URLs cannot be read here (no downloader given)")
    try:
        data = fetch_url(url)
    except Exception as e:  # the downloader's own one-line errors (size limit, HTTP status, offline...)
        return Frame(url, None, error=str(e))
    return _still(url, lambda: decode_bgr(data, url))


STREAM_TIMEOUT_MS = 10_000  # a network stream that neither opens nor sends a frame in 10 s is given up


def _log_errors_only(cv2) -> None:
    """OpenCV's own log at errors only: cv2.utils.logging in OpenCV 5, cv2.setLogLevel in 4.x (4.10 has no
    cv2.utils.logging), where ERROR is level 2 as in logger.defines.hpp."""
    logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_api is not None:
        logging_api.setLogLevel(logging_api.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(2)


def is_pipe(location: str) -> bool:
    """A named pipe (FIFO): it can be read once only, and opening it waits for a writer."""
    try:
        return stat.S_ISFIFO(os.stat(location).st_mode)
    except (OSError, ValueError):
        return False


def check_source(location: str) -> None:
    """SourceError now for a webcam, stream or file that OpenCV cannot open (before a model loads). A pipe is not
    tried: what a trial open reads from it is gone, and its writer with it, so the real open would wait for ever."""
    if not is_pipe(location):
        open_capture(location).release()


def open_capture(location: str):
    """cv2.VideoCapture for a file, a webcam index or a stream URL; SourceError when OpenCV cannot open it."""
    import cv2

    _log_errors_only(cv2)  # our one-line error says it; not its WARNs
    with c_library_messages(keep=_LOG_LINES):  # nor FFmpeg's and OpenCV's own ('moov atom not found', ...)
        if location.isdigit():
            cap = cv2.VideoCapture(int(location))
        elif "://" in location:
            cap = cv2.VideoCapture(location, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                                           cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        elif is_pipe(location):
            cap = _interruptible(lambda: cv2.VideoCapture(location))
        else:
            cap = cv2.VideoCapture(location)
    if not cap.isOpened():
        cap.release()
        what = f"webcam {location}" if location.isdigit() else location
        raise SourceError(f"{what}: OpenCV cannot open it as a video or stream")
    return cap


def _interruptible(call: Callable):
    """call() in a helper thread, waited for here: OpenCV opening a pipe waits in C, for a writer and then for
    its first bytes, where neither Ctrl-C nor SIGTERM reaches; here both do (the helper is left behind)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001  (raised again below, in the caller's thread)
            outcome["error"] = e

    helper = threading.Thread(target=run, name="rdet-open-pipe", daemon=True)
    helper.start()
    while helper.is_alive():
        helper.join(0.1)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def video_frames(location: str, vid_stride: int = 1) -> Iterator[Frame]:
    """Every `vid_stride`-th frame of a video file (frames 0, N, 2N, ...), decoded by OpenCV as BGR."""
    if os.path.exists(location) and not os.path.isfile(location):  # FFmpeg would wait on a FIFO for ever
        yield Frame(location, None, error=f"{location}: not a regular file (a pipe or device is read as a live "
                                          f"stream: --source {location})")
        return
    yield from _capture_frames(location, vid_stride, stream=False)


def stream_frames(location: str, vid_stride: int = 1) -> Iterator[Frame]:
    """Frames of a live source as they arrive, until it ends; the caller stops it early with Ctrl-C (the capture
    is released however the loop ends)."""
    yield from _capture_frames(location, vid_stride, stream=True)


def _capture_frames(location: str, vid_stride: int, stream: bool) -> Iterator[Frame]:
    if vid_stride < 1:
        raise ValueError("vid_stride must be at least 1")
    try:
        cap = open_capture(location)
    except SourceError as e:
        yield Frame(location, None, error=str(e))
        return
    try:
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS) or None
        announced = 0 if stream else int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        index, produced, complaints = 0, 0, []
        while True:
            # a file's decoder complaints are kept for the one line below; a live source keeps the terminal's
            with nullcontext([]) if stream else c_library_messages(keep=_LOG_LINES) as said:
                if index % vid_stride:
                    ok = cap.grab()  # skipped frames are not decoded
                    frame = None
                else:
                    ok, frame = cap.read()
            complaints += said
            if not ok:
                break
            if frame is not None:
                produced += 1
                yield Frame(location, np.ascontiguousarray(frame), index=index, fps=fps)
            index += 1
        if not produced:
            what = "the stream" if stream else "the video"
            yield Frame(location, None, error=f"{location}: {what} gave no frames OpenCV could decode")
        elif complaints and index < announced:  # the decoder gave up part way: say so, the frames read are kept
            said = re.sub(r"^\[[^]]*\]\s*", "", complaints[-1])
            yield Frame(location, None, index=index, error=f"{location}: corrupt after frame {index - 1} of "
                        f"{announced} ({said}); the frames before it were read")
    finally:
        cap.release()
