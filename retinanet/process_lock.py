"""The one inter-process lock: a lock file held by one process at a time, with no lock file left behind.

On POSIX the lock is an flock on the lock file, which is unlinked before it is released: a waiter that then
locks the unlinked inode notices (its path no longer names that inode) and tries again on a fresh file, so
removing the file never lets two processes in at once. A lock file left by a killed process is not held
(the kernel drops flocks with the process) and is simply reused. Elsewhere filelock does the locking.
`zoo` locks cache files with it; `rdet train`, `predict --out` and `eval --report` their directories.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from retinanet.errors import RetinaNetError

_POLL = 0.05

try:
    import fcntl
except ImportError:  # pragma: no cover (Windows)
    fcntl = None


def _try_flock(path: Path) -> int | None:
    """An fd holding the flock on `path`, or None when another process holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # we locked a file its holder had just removed: start again with the current one


def _release_flock(path: Path, fd: int) -> None:
    try:
        os.unlink(path)  # while still held, so nobody can lock this inode and believe it current
    except OSError:
        pass
    os.close(fd)


def _posix_acquire(path: Path, timeout: float, on_wait):
    fd = _try_flock(path)
    if fd is None:
        on_wait()
        give_up = time.monotonic() + timeout
        while fd is None:
            if time.monotonic() >= give_up:
                raise TimeoutError
            time.sleep(_POLL)
            fd = _try_flock(path)
    return lambda: _release_flock(path, fd)


def _filelock_acquire(path: Path, timeout: float, on_wait):  # pragma: no cover (Windows)
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        on_wait()
        try:
            lock.acquire(timeout=timeout)
        except Timeout:
            raise TimeoutError from None
    return lock.release


def acquire(path: Path, timeout: float, on_wait):
    """Take the lock file `path` (waiting up to `timeout` s after calling on_wait once, which may raise to not
    wait at all); returns the function that releases it. TimeoutError when the wait ran out; OSError when the
    lock file cannot be created."""
    return (_posix_acquire if fcntl else _filelock_acquire)(Path(path), timeout, on_wait)


@contextmanager
def held_alone(path: Path, refusal: str) -> Iterator[None]:
    """Hold the lock file `path` for the block, or fail at once with RetinaNetError(refusal) when another
    process holds it (a directory one run at a time writes into)."""
    def refuse():
        raise RetinaNetError(refusal)

    try:
        release = acquire(path, 0, refuse)
    except OSError as e:
        raise RetinaNetError(f"cannot lock {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        release()
