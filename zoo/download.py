"""Fetching one file into place: streamed, resumable, retried, verified, and safe against concurrent fetches.

The bytes land in `<dest>.part` (zoo.http_fetch) or a private temporary copy; only a file whose SHA-256 matches
the manifest takes the final name (os.replace), with its full digest recorded beside it, and every later use
re-hashes it against that record (zoo.checksum). `<dest>.lock` makes concurrent fetches of one file wait for
each other instead of downloading it twice. Settings: zoo.settings; progress: zoo.progress.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from retinanet.file_check import file_problem

from .cache import TEMP_SUFFIX, Cache
from .checksum import check_cached, install_verified, is_pinned
from .errors import CacheError, DownloadError
from .http_fetch import download_part
from .lock import locked
from .progress import TransferProgress, make_progress
from .settings import Policy, is_offline, local_path, mirrored, redacted


def _copy_verified(src: Path, expected: str, dest: Path, progress: TransferProgress, chunk_size: int,
                   url: str) -> Path:
    """Copy a local file to `dest` through a temporary file beside it, verified before it takes the name.

    A bad or unreadable source, or a full or read-only cache, leaves the cache as it was.
    """
    problem = file_problem(src)
    if problem:
        raise DownloadError(f"{src}: {problem}")
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise CacheError(f"cannot write into the cache directory {dest.parent}: {e.strerror or e}") from None
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            progress.start(dest.name, os.fstat(f.fileno()).st_size, 0)
            done = 0
            while chunk := f.read(chunk_size):
                out.write(chunk)
                done += len(chunk)
                progress.update(done)
        return install_verified(tmp, expected, dest, str(src), "the cache is unchanged", url)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CacheError(f"cannot copy {src} into {dest.parent}: {e.strerror or e}; the cache is unchanged") \
            from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _reporting(progress: TransferProgress):
    """Tell the progress when the transfer is over, however it ends."""
    ok = False
    try:
        yield
        ok = True
    finally:
        progress.finish(ok)


def install_copy(src: str | os.PathLike, sha256_prefix: str, dest_path: str | os.PathLike, *, url: str,
                 quiet: bool = False, progress: TransferProgress | None = None,
                 chunk_size: int = Policy.chunk_size) -> Path:
    """Place a local file at `dest_path` when its SHA-256 matches `sha256_prefix` (what `rdet import` does),
    recorded as the file of the entry whose manifest URL is `url`.

    No lock is needed: the copy has a private name until it is verified, and the rename is atomic.
    """
    src, dest = Path(src), Path(dest_path)
    problem = file_problem(src)
    if problem:
        raise DownloadError(f"{src}: {problem}")
    Cache(dest.parent).ensure_room(dest.name)
    progress = progress or make_progress(quiet)
    with _reporting(progress):
        return _copy_verified(src, sha256_prefix, dest, progress, chunk_size, url)


def cached(url: str, sha256: str, dest_path: str | os.PathLike, progress: TransferProgress | None = None) -> bool:
    """True when `dest_path` holds the file the entry (`url`, `sha256`) names, re-hashed now; a file that
    fails is moved aside (with a warning) and never used."""
    try:
        ok, problem = check_cached(Path(dest_path), url, sha256)
    except OSError as e:
        raise CacheError(f"cannot read {dest_path}: {e.strerror or e}") from None
    if problem:
        (progress or TransferProgress()).warn(problem)
    return ok


def fetch(url: str, sha256_prefix: str, dest_path: str | os.PathLike, *, hint: str | None = None,
          offline: bool | None = None, quiet: bool = False, progress: TransferProgress | None = None,
          **options) -> Path:
    """The verified file `dest_path` of the manifest entry (`url`, `sha256_prefix`), fetched from `url` (http,
    https or file; RDET_MIRROR applies) when the cache does not hold it yet.

    `sha256_prefix` (8 to 64 hex digits) must match the file's SHA-256, and a cached copy must also match the
    full digest recorded when it was first verified. `hint` tells a user what to do with a copy fetched by
    other means, e.g. "run `rdet import NAME FILE`" (default: save it as dest_path). `offline` (default
    $RDET_OFFLINE) forbids the network; `progress` replaces the default reporting (a bar on a terminal, lines
    otherwise, nothing when `quiet`). `options` (retries, backoff, timeout, chunk_size, deadline, min_rate,
    rate_window, lock_timeout) override Policy and its environment variables.
    Raises DownloadError or CacheError; on Ctrl-C the .part is kept for a later resume.
    """
    dest = Path(dest_path)
    progress = progress or make_progress(quiet)
    if cached(url, sha256_prefix, dest, progress):
        return dest
    source = mirrored(url)
    hint = hint or f"save it as {dest}"
    is_file = urlparse(source).scheme == "file"
    if not is_file and is_offline(offline):
        raise DownloadError(f"{dest.name} is not in the cache ({dest.parent}) and rdet is offline "
                            f"(--offline or RDET_OFFLINE); get it from {redacted(source)} and {hint}")
    policy = Policy.resolve(**options)
    Cache(dest.parent).ensure_room(dest.name)
    if urlparse(source).scheme == "http" and not is_pinned(sha256_prefix):
        progress.warn(f"{dest.name} comes over plain http ({redacted(source)}) and is checked against only "
                      f"{len(sha256_prefix)} hex digits of its SHA-256, which a forger can match: prefer an https "
                      "URL or RDET_MIRROR, or pin the full digest in a manifest")
    try:
        with _reporting(progress), locked(dest, progress, timeout=policy.lock_timeout):
            if cached(url, sha256_prefix, dest, progress):  # another process fetched it while we waited
                return dest
            if is_file:
                return _copy_verified(local_path(source), sha256_prefix, dest, progress, policy.chunk_size, url)
            part = download_part(source, dest, sha256_prefix, policy, progress, hint)
            return install_verified(part, sha256_prefix, dest, redacted(source), "the partial download was deleted",
                                    url)
    except OSError as e:  # the cache directory failed under us: read-only, full, removed
        raise CacheError(f"cannot write {dest}: {e.strerror or e}") from None
