"""Fetching one file into place: streamed, resumable, retried, verified, and safe against concurrent fetches.

The bytes land in `<dest>.part`; only a file whose SHA-256 matches the manifest takes the final name (os.replace),
so a file under its final name is always a verified one. `<dest>.lock` makes concurrent fetches of one file wait
for each other instead of downloading it twice. Settings: zoo.settings; progress: zoo.progress.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import requests

from .cache import TEMP_SUFFIX, part_path
from .checksum import install_verified
from .errors import DownloadError
from .lock import locked
from .progress import Reporter, human, make_reporter
from .settings import Policy, is_offline, local_path, mirrored


def _check_space(directory: Path, needed: int, name: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(f"not enough disk space for {name} in {directory}: need {needed} bytes "
                            f"({human(needed)}), {free} free ({human(free)})")


def _copy(src, out, reporter: Reporter, done: int = 0) -> int:
    """Copy a stream of chunks into `out`, reporting progress; returns the bytes now in `out`."""
    for chunk in src:
        out.write(chunk)
        done += len(chunk)
        reporter.update(done)
    return done


def _copy_verified(src: Path, sha256_prefix: str, dest: Path, reporter: Reporter, chunk_size: int) -> Path:
    """Copy a local file to `dest` through a temporary file beside it, verified before it takes the name.

    A bad or unreadable source leaves the cache as it was.
    """
    if not src.is_file():
        raise DownloadError(f"{src}: no such file")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=TEMP_SUFFIX)
    tmp = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            reporter.start(dest.name, src.stat().st_size, 0)
            _copy(iter(lambda: f.read(chunk_size), b""), out, reporter)
        return install_verified(tmp, sha256_prefix, dest, str(src), "the cache is unchanged")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def _reporting(reporter: Reporter):
    """Tell the reporter when the transfer is over, however it ends."""
    ok = False
    try:
        yield
        ok = True
    finally:
        reporter.finish(ok)


def install_copy(src: str | os.PathLike, sha256_prefix: str, dest_path: str | os.PathLike, *,
                 quiet: bool = False, progress: Reporter | None = None,
                 chunk_size: int = Policy.chunk_size) -> Path:
    """Place a local file at `dest_path` when its SHA-256 matches `sha256_prefix` (what `rdet import` does).

    No lock is needed: the copy has a private name until it is verified, and the rename is atomic.
    """
    src, dest = Path(src), Path(dest_path)
    if not src.is_file():
        raise DownloadError(f"{src}: no such file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    reporter = progress or make_reporter(quiet)
    with _reporting(reporter):
        return _copy_verified(src, sha256_prefix, dest, reporter, chunk_size)


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, 5xx, a body cut short."""


def _content_range_total(response) -> int | None:
    """N from `Content-Range: bytes a-b/N` or `bytes */N`."""
    total = response.headers.get("Content-Range", "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _body_offset(response, have: int, part: Path, url: str, hint: str) -> int | None:
    """Where the response body starts in the file: `have` for a resumed 206, 0 for a full 200.

    None means the .part is already complete (416 with a total equal to its size). Raises DownloadError for
    an error the user must deal with, _Transient for one worth retrying.
    """
    status = response.status_code
    if status == 206 and have:
        start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start == str(have):
            return have
        part.unlink(missing_ok=True)  # a range we did not ask for: start over
        raise _Transient(f"the server answered a different range ({start}), starting over")
    if status in (200, 206):
        return 0  # a full body: a server that ignores Range sends 200, and the .part is rewritten
    if status == 416:
        if _content_range_total(response) == have:
            return None
        part.unlink(missing_ok=True)  # the .part does not fit the file the server has now
        raise _Transient("the partial download does not match the server's file, starting over")
    if status >= 500 or status == 429:
        raise _Transient(f"HTTP {status}")
    raise DownloadError(f"HTTP {status} for {url}; download it yourself and {hint}")


def _attempt(session, url: str, dest: Path, policy: Policy, reporter: Reporter, hint: str) -> None:
    """One GET into the .part, resuming from its current size; returns when the .part holds the whole body."""
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges and sizes of the file itself, not of a gzip stream
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=policy.timeout) as response:
            offset = _body_offset(response, have, part, url, hint)
            if offset is None:
                return
            length = response.headers.get("Content-Length", "")
            body = int(length) if length.isdigit() else None
            total = offset + body if body is not None else _content_range_total(response)
            if body is not None:
                # a 206 body is what is missing; a 200 body replaces the .part, whose bytes are freed first
                _check_space(dest.parent, body - (have if offset == 0 else 0), dest.name)
            with open(part, "ab" if offset else "wb") as out:
                reporter.start(dest.name, total, offset)
                done = _copy(response.iter_content(policy.chunk_size), out, reporter, offset)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
        raise _Transient(_reason(e)) from e
    except requests.RequestException as e:
        raise DownloadError(f"cannot download {url}: {_reason(e)}; download it yourself and {hint}") from e
    except OSError as e:  # writing the .part failed: a full disk, a read-only cache
        raise DownloadError(f"cannot write {part}: {e.strerror or e}") from None
    if total is not None and done < total:
        raise _Transient(f"connection closed after {done} of {total} bytes")


def _reason(e: Exception) -> str:
    """A short cause for a requests error (the raw ones nest urllib3 reprs several levels deep)."""
    if isinstance(e, requests.Timeout) or "timed out" in str(e).lower():
        return "timed out"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "connection broken mid-body"
    text = str(e).split("(Caused by ")[-1].rstrip(")")
    return text.split(": ", 1)[-1][:200] or type(e).__name__


def _download(url: str, dest: Path, policy: Policy, reporter: Reporter, hint: str) -> None:
    """Attempts with exponential backoff until the .part is complete; each retry resumes where the last stopped."""
    with requests.Session() as session:  # trust_env stays on: proxy variables and .netrc work
        for retry in range(policy.retries + 1):
            try:
                return _attempt(session, url, dest, policy, reporter, hint)
            except _Transient as e:
                if retry == policy.retries:
                    raise DownloadError(f"could not download {url} after {retry + 1} attempts ({e}); run again "
                                        f"to resume, or download it yourself and {hint}") from None
                delay = policy.delay(retry)
                reporter.note(f"{dest.name}: {e}; retry {retry + 1} of {policy.retries} in {delay:.3g} s")
                time.sleep(delay)


def fetch(url: str, sha256_prefix: str, dest_path: str | os.PathLike, *, hint: str | None = None,
          offline: bool | None = None, quiet: bool = False, progress: Reporter | None = None,
          retries: int | None = None, backoff: float | None = None,
          timeout: float | tuple[float, float] | None = None, chunk_size: int | None = None) -> Path:
    """The verified file `dest_path`, fetched from `url` (http, https or file) when it is not there yet.

    `sha256_prefix` (8 to 64 hex digits) must match the file's SHA-256. `hint` tells a user what to do with a
    copy fetched by other means, e.g. "run `rdet import NAME FILE`" (default: save it as dest_path).
    `offline` (default $RDET_OFFLINE) forbids the network; `progress` replaces the default reporting (a bar on
    a terminal, lines otherwise, nothing when `quiet`). `retries`, `backoff`, `timeout` and `chunk_size`
    override Policy and its environment variables.
    Raises DownloadError; on Ctrl-C the .part is kept for a later resume and KeyboardInterrupt goes on.
    """
    dest = Path(dest_path)
    if _present(dest):
        return dest
    url = mirrored(url)
    hint = hint or f"save it as {dest}"
    is_file = urlparse(url).scheme == "file"
    if not is_file and is_offline(offline):
        raise DownloadError(f"{dest.name} is not in the cache ({dest.parent}) and rdet is offline "
                            f"(--offline or RDET_OFFLINE); get it from {url} and {hint}")
    policy = Policy.resolve(retries, backoff, timeout, chunk_size)
    reporter = progress or make_reporter(quiet)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _reporting(reporter), locked(dest, reporter):
        if _present(dest):  # another process fetched it while we waited for the lock
            return dest
        if is_file:
            return _copy_verified(local_path(url), sha256_prefix, dest, reporter, policy.chunk_size)
        _download(url, dest, policy, reporter, hint)
        return install_verified(part_path(dest), sha256_prefix, dest, url, "the partial download was deleted")


def _present(dest: Path) -> bool:
    """The hot-path check: a non-empty file under the final name (only verified files ever get it)."""
    return dest.is_file() and dest.stat().st_size > 0
