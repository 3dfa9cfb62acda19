"""The inter-process lock `<dest>.lock` of whoever writes a cache file."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .cache import lock_path
from .errors import DownloadError
from .progress import Reporter

@contextmanager
def locked(dest: Path, reporter: Reporter | None = None, *, wait: bool = True):
    """Hold `<dest>.lock` so that one process at a time writes `dest` (released on any exit, Ctrl-C included)."""
    lock = FileLock(lock_path(dest))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise DownloadError(f"{dest.name} is being written by another rdet process; try again when it is "
                                "done") from None
        if reporter:
            reporter.note(f"{dest.name}: waiting for another rdet process that is fetching it")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()

