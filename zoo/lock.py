"""The inter-process lock `<dest>.lock` of whoever writes a cache file: bounded waits, and no lock file left
(retinanet.process_lock says how)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from retinanet.process_lock import acquire

from .cache import lock_path
from .errors import CacheError, DownloadError, LockTimeoutError
from .progress import TransferProgress


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
        release = acquire(path, timeout, on_wait)
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
