"""Reading the next frames in a background thread while the current ones are detected.

`rdet predict` over files, videos or streams reads (decodes) a frame, then detects in it, then reads the next. On
a GPU the detection of a photo takes a few milliseconds and decoding it on the host takes as long or longer, so
in turn the GPU and the host wait for each other. Read ahead, the time per frame is the slower of the two instead
of their sum. OpenCV's decoders release the GIL, so the thread truly runs beside the detection.

The frames come out in their order, each exactly once; an exception the source raises comes out where its frame
would have; at most `depth` frames wait decoded (memory stays bounded, and a live stream is read no faster than it
is detected). Closing the iterator (the loop ends early, Ctrl-C, an error downstream) stops the thread after the
frame it is reading and closes the source there, so a video capture is released.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END = range(3)
_POLL = 0.05  # seconds between checks of the stop flag while the queue is full
_JOIN = 5.0  # seconds to wait for the reader on close (a live stream's read may block until its next frame)


def read_ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """`items` in order, read up to `depth` ahead by a background thread; depth 0 reads in the caller's thread."""
    if depth < 1:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(items, slots, stop), name="rdet-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
        reader.join(_JOIN)


def _read(items: Iterable, slots: queue.Queue, stop: threading.Event) -> None:
    """The reader thread: put each item (or the exception that ended the source), then the end."""
    source = iter(items)
    try:
        for item in source:
            if not _put(slots, (_ITEM, item), stop):
                return
        _put(slots, (_END, None), stop)
    except BaseException as err:  # noqa: BLE001 - handed to the consumer, which raises it in its own thread
        _put(slots, (_ERROR, err), stop)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # a generator's finally blocks run here: files closed, captures released


def _put(slots: queue.Queue, entry: tuple, stop: threading.Event) -> bool:
    """Wait for a free slot unless the consumer has gone; False when it has."""
    while not stop.is_set():
        try:
            slots.put(entry, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False
