"""retinanet.data.read_ahead: frames read by a background thread, in order, bounded, errors and closing intact."""
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retinanet.data.read_ahead import read_ahead


class Source:
    """An iterable that records how many items were taken from it and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.produced = 0
        self.closed = threading.Event()
        self.advanced = threading.Condition()

    def __iter__(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ValueError(f"frame {i} is broken")
                with self.advanced:
                    self.produced += 1
                    self.advanced.notify_all()
                yield i
        finally:
            self.closed.set()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        with self.advanced:
            return self.advanced.wait_for(lambda: self.produced >= count, timeout)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(), max_size=30), st.integers(0, 4))
def test_every_item_comes_out_once_in_order(items, depth):
    assert list(read_ahead(items, depth)) == items


def test_the_next_frame_is_read_while_the_current_one_is_used():
    src = Source(10)
    frames = read_ahead(src, depth=2)
    assert next(frames) == 0
    assert src.wait_for(3)  # frames 1 and 2 were read without being asked for
    time.sleep(0.2)
    assert src.produced <= 4  # at most `depth` waiting, plus one held by the reader: memory stays bounded
    assert list(frames) == list(range(1, 10))


def test_depth_0_reads_only_when_asked():
    src = Source(5)
    frames = read_ahead(src, depth=0)
    assert next(frames) == 0
    time.sleep(0.1)
    assert src.produced == 1


def test_an_error_comes_out_where_its_frame_would_have():
    got = []
    with pytest.raises(ValueError, match="frame 3 is broken"):
        for item in read_ahead(Source(6, fail_at=3), depth=2):
            got.append(item)
    assert got == [0, 1, 2]


def test_stopping_early_closes_the_source_in_the_reader_and_ends_the_thread():
    src = Source(1000)
    frames = read_ahead(src, depth=2)
    assert next(frames) == 0
    frames.close()  # as a `for` loop left by break, an exception or Ctrl-C does
    assert src.closed.wait(5)
    assert src.produced < 10
    assert not any(t.name == "rdet-read-ahead" and t.is_alive() for t in threading.enumerate())
