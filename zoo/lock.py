"""The inter-process lock `<dest>.lock` of whoever writes a cache file: bounded waits, and no lock file left.

On POSIX the lock is an flock on the lock file, which is unlinked before it is released: a waiter that then
locks the unlinked inode notices (its path no longer names that inode) and tries again on a fresh file, so
removing the file never lets two processes in at once. A lock file left by a killed process is not held
(the kernel drops flocks with the process) and is simply reused. Elsewhere filelock does the locking.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from .cache import lock_path
from .errors import CacheError, DownloadError, LockTimeoutError
from .progress import TransferProgress

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
    """Take the lock (waiting up to `timeout` s after calling on_wait once); returns the release function."""
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


@contextmanager
def locked(dest: Path, progress: TransferProgress | None = None, *, wait: bool = True, timeout: float = 3 * 3600.0):
    """Hold `<dest>.lock` so that one process at a time writes `dest` (released on any exit, Ctrl-C included).

    Without `wait`, a held lock is a DownloadError at once; with it, the wait is announced (even when quiet:
    it may be long) and bounded by `timeout` seconds, then LockTimeoutError."""
    path = lock_path(dest)

    def on_wait():
        if not wait:
            raise DownloadError(f"{dest.name} is being written by another rdet process; try again when it is done")
        (progress or TransferProgress()).warn(f"{dest.name}: waiting up to {timeout:g} s for another rdet process "
                                              "that is fetching it (RDET_LOCK_TIMEOUT)")

    try:
        release = (_posix_acquire if fcntl else _filelock_acquire)(path, timeout, on_wait)
    except TimeoutError:
        raise LockTimeoutError(f"{dest.name}: another rdet process has been fetching it for over {timeout:g} s "
                               f"(RDET_LOCK_TIMEOUT); try again later, or remove {path} if no rdet is "
                               "running") from None
    except OSError as e:
        raise CacheError(f"cannot lock {path}: {e.strerror or e} (is the cache directory writable?)") from None
    try:
        yield
    finally:
        release()
