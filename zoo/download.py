"""Fetching one file into place: streamed, resumable, retried, verified, and safe against concurrent fetches.

The bytes land in `<dest>.part`; only a file whose SHA-256 matches the manifest takes the final name (os.replace),
so a file under its final name is always a verified one. `<dest>.lock` makes concurrent fetches of one file wait
for each other instead of downloading it twice.

Settings, from arguments or the environment: RDET_RETRIES (retries after the first attempt), RDET_BACKOFF (the
first retry's delay in seconds, doubled each time), RDET_TIMEOUT (connect and read timeout in seconds),
RDET_MIRROR (a base URL that replaces http(s)://download.openmmlab.com), RDET_OFFLINE=1 (never use the network).
Proxies come from the standard variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), which requests honours.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
from filelock import FileLock, Timeout

from .cache import TEMP_SUFFIX, lock_path, part_path
from .errors import DownloadError

PUBLISHED_PREFIXES = ("http://download.openmmlab.com", "https://download.openmmlab.com")
_MAX_DELAY = 60.0
_HASH_CHUNK = 1 << 20


# ---------------------------------------------------------------------------------------------------- settings

def _env(name: str, kind, default):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise DownloadError(f"{name} must be a non-negative {kind.__name__}, not {raw!r}")
    return value


@dataclass(frozen=True)
class Policy:
    """How hard to try: retries after the first attempt, backoff base, (connect, read) timeouts, chunk size."""

    retries: int = 5
    backoff: float = 1.0
    timeout: tuple[float, float] = (10.0, 60.0)
    chunk_size: int = 1 << 20

    @classmethod
    def resolve(cls, retries=None, backoff=None, timeout=None, chunk_size=None) -> "Policy":
        """Arguments win over RDET_RETRIES / RDET_BACKOFF / RDET_TIMEOUT, which win over the defaults."""
        if timeout is None:
            seconds = _env("RDET_TIMEOUT", float, None)
            timeout = cls.timeout if seconds is None else seconds
        return cls(
            retries=retries if retries is not None else _env("RDET_RETRIES", int, cls.retries),
            backoff=backoff if backoff is not None else _env("RDET_BACKOFF", float, cls.backoff),
            timeout=tuple(timeout) if isinstance(timeout, (tuple, list)) else (float(timeout), float(timeout)),
            chunk_size=chunk_size or cls.chunk_size,
        )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): exponential, capped."""
        return min(self.backoff * 2 ** retry, _MAX_DELAY)


def is_offline(offline: bool | None = None) -> bool:
    """The explicit argument, else RDET_OFFLINE."""
    if offline is not None:
        return offline
    return os.environ.get("RDET_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def mirrored(url: str) -> str:
    """`url` with the published download.openmmlab.com prefix replaced by $RDET_MIRROR, when set."""
    mirror = os.environ.get("RDET_MIRROR", "").strip().rstrip("/")
    if mirror:
        for prefix in PUBLISHED_PREFIXES:
            if url.startswith(prefix + "/"):
                return mirror + url[len(prefix):]
    return url


def local_path(url: str) -> Path:
    """The path a file:// URL names."""
    return Path(url2pathname(urlparse(url).path))


# ---------------------------------------------------------------------------------------------------- progress

def human(n: int | None) -> str:
    """A byte count for people: 1.5 MB."""
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


class Reporter:
    """Progress of one transfer. This base reports nothing (--quiet); subclasses write to stderr, never stdout."""

    def start(self, label: str, total: int | None, done: int) -> None:
        """A transfer (re)starts: `total` bytes in all when known, `done` of them already on disk."""

    def update(self, done: int) -> None:
        """`done` bytes are on disk now."""

    def note(self, message: str) -> None:
        """Something a person may want to know: a retry, a wait for another process."""

    def finish(self, ok: bool) -> None:
        """The transfer is over, successfully or not. Called once."""


class LineReporter(Reporter):
    """Plain lines for logs and pipes: one at the start, one every 10%, one at the end."""

    def __init__(self, stream=None):
        self.stream = stream
        self.label, self.total, self.done, self.tenth, self.began = "", None, 0, 0, 0.0

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def start(self, label, total, done):
        if not self.label:
            self.began = time.monotonic()
        if done:
            self._print(f"{label}: resuming at {human(done)} of {human(total)}")
        else:
            again = "starting over" if self.label else "fetching"
            self._print(f"{label}: {again} {human(total)}")
        self.label, self.total, self.done = label, total, done
        self.tenth = self._tenth(done)

    def _tenth(self, done: int) -> int:
        return done * 10 // self.total if self.total else 0

    def update(self, done):
        self.done = done
        tenth = self._tenth(done)
        if tenth > self.tenth and tenth < 10:
            self._print(f"{self.label}: {tenth * 10}% ({human(done)} of {human(self.total)})")
        self.tenth = tenth

    def note(self, message):
        self._print(message)

    def finish(self, ok):
        if ok and self.label:
            seconds = max(time.monotonic() - self.began, 1e-6)
            self._print(f"{self.label}: done, {human(self.done)} in {seconds:.1f} s "
                        f"({human(int(self.done / seconds))}/s)")


class RichReporter(Reporter):
    """A rich progress bar on stderr (bytes, speed, ETA) for terminals."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                                 transient=False)
        self.task = None

    def start(self, label, total, done):
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(label, total=total, completed=done)
        else:
            self.progress.reset(self.task, total=total, completed=done)

    def update(self, done):
        self.progress.update(self.task, completed=done)

    def note(self, message):
        self.progress.console.print(message, highlight=False, markup=False)

    def finish(self, ok):
        if self.task is not None:
            self.progress.stop()


def make_reporter(quiet: bool = False) -> Reporter:
    """Nothing when quiet, a progress bar on a terminal, plain lines otherwise."""
    if quiet:
        return Reporter()
    return RichReporter() if sys.stderr.isatty() else LineReporter()


# ---------------------------------------------------------------------------------------------------- checks

def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def matches(digest: str, sha256_prefix: str) -> bool:
    return digest.startswith(sha256_prefix.lower())


def mismatch_message(name: str, expected: str, actual: str) -> str:
    """`expected` is the manifest's prefix; the actual digest is cut to the same length to compare by eye."""
    return f"checksum mismatch for {name}: expected sha256 {expected.lower()}…, got {actual[:len(expected)]}…"


def _install(tmp: Path, sha256_prefix: str, dest: Path, source: str, cleanup: str) -> Path:
    """Verify `tmp` and give it the final name; a bad file is deleted, never renamed."""
    actual = sha256_file(tmp)
    if not matches(actual, sha256_prefix):
        tmp.unlink(missing_ok=True)
        raise DownloadError(f"{mismatch_message(dest.name, sha256_prefix, actual)} (from {source}); {cleanup}")
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())  # the data must be on disk before the name says it is verified
    os.replace(tmp, dest)
    return dest


def _check_space(directory: Path, needed: int, name: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DownloadError(f"not enough disk space for {name} in {directory}: need {needed} bytes "
                            f"({human(needed)}), {free} free ({human(free)})")


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


# ---------------------------------------------------------------------------------------------------- transfers

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
        return _install(tmp, sha256_prefix, dest, str(src), "the cache is unchanged")
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
        return _install(part_path(dest), sha256_prefix, dest, url, "the partial download was deleted")


def _present(dest: Path) -> bool:
    """The hot-path check: a non-empty file under the final name (only verified files ever get it)."""
    return dest.is_file() and dest.stat().st_size > 0
