"""One HTTP(S) file into `<dest>.part`: resumed from every byte received, retried with backoff when the failure
may heal, failed at once when it cannot, and bounded by a total deadline and a minimum rate.

The body is read with read1 (what one socket read returns) rather than in fixed-size chunks, so that every byte
received is written before a drop, and the clock and rate are checked however slowly the bytes trickle in.
"""
from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests
import urllib3

from .cache import part_path
from .checksum import matches, sha256_file
from .errors import CacheError, DownloadError
from .http_session import Refused, open_session
from .progress import TransferProgress, human
from .settings import Policy, redacted


class Transient(Exception):
    """A failure worth retrying: connection dropped or timed out, 5xx, a body cut short, a transfer too slow."""


class DeadlineExceeded(Exception):
    """RDET_DEADLINE passed mid-body."""


class Deadline:
    """The total time one fetch may take, retries and waits included (RDET_DEADLINE)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def bounded(self, timeout: tuple[float, float]) -> tuple[float, float]:
        """requests' (connect, read) timeouts, neither longer than what is left (a millisecond at least)."""
        left = max(self.left(), 0.001)
        return min(timeout[0], left), min(timeout[1], left)


@dataclass(frozen=True)
class _Outcome:
    complete: bool  # the stated length was reached, the server said the .part holds all, or ignored a Range
    received: int  # body bytes this attempt wrote


def _check_space(directory: Path, needed: int, name: str) -> None:
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return  # no figure to compare with: the write itself will say
    if needed > free:
        raise DownloadError(f"not enough disk space for {name} in {directory}: need {needed} bytes "
                            f"({human(needed)}), {free} free ({human(free)})")


DISK_RESERVE = 1 << 30  # a body of unstated length stops before it leaves less than this free on the cache's disk
_SPACE_CHECK_EVERY = 64 << 20  # bytes written between two looks at the free space


class _SpaceGuard:
    """The .part's file, for a body of unstated length: writing stops before the disk is all but full (a server
    may stream without end), and the .part is deleted, since keeping it would keep the disk full."""

    def __init__(self, out, part: Path, name: str):
        self.out, self.part, self.name, self.unchecked = out, part, name, 0

    def write(self, chunk: bytes) -> None:
        self.unchecked += len(chunk)
        if self.unchecked >= _SPACE_CHECK_EVERY:
            self.unchecked = 0
            try:
                free = shutil.disk_usage(self.part.parent).free
            except OSError:
                free = None
            if free is not None and free - len(chunk) < DISK_RESERVE:
                self.out.close()
                self.part.unlink(missing_ok=True)
                raise DownloadError(f"stopped {self.name}: the server gave no length and the disk of "
                                    f"{self.part.parent} is down to {human(free)} free (the partial file was "
                                    f"deleted)")
        self.out.write(chunk)


def _whole_number(text: str) -> int | None:
    """`text` as a count of bytes when it is one, else None: a header may hold anything ('-1', '1e9', '10, 20',
    or '²', which str.isdigit accepts and int refuses)."""
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def content_length(response) -> int | None:
    """The Content-Length a response states, None when it states none that is a plain number."""
    return _whole_number(response.headers.get("Content-Length", ""))


def _content_range_total(response) -> int | None:
    """N from `Content-Range: bytes a-b/N` or `bytes */N`."""
    return _whole_number(response.headers.get("Content-Range", "").rpartition("/")[2])


def _body_offset(response, have: int, part: Path, shown: str, hint: str) -> int | None:
    """Where the response body starts in the file: `have` for a resumed 206, 0 for a full 200.

    None means the .part already holds all the server has (416 for a range starting at its size). Raises
    DownloadError for an error the user must deal with, Transient for one worth retrying.
    """
    status = response.status_code
    if status == 206:  # a part must start where the .part ends (at 0 when rdet asked for no range at all)
        start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start == str(have):
            return have
        part.unlink(missing_ok=True)  # a range we did not ask for: start over
        raise Transient(f"the server answered a different range ({start[:20] or 'none stated'}), starting over")
    if status == 200:
        return 0  # a full body: a server that ignores Range sends 200, and the .part is rewritten
    if status == 416:
        total = _content_range_total(response)
        if total is None or total == have:
            return None  # nothing past our bytes: the .part is whole (verification decides if it is right)
        part.unlink(missing_ok=True)  # the .part does not fit the file the server has now
        raise Transient("the partial download does not match the server's file, starting over")
    if status >= 500 or status == 429:
        raise Transient(f"HTTP {status}")
    raise DownloadError(f"HTTP {status} for {shown}; download it yourself and {hint}")


def stream_body(raw, out, progress: TransferProgress, done: int, policy: Policy, clock: Deadline) -> int:
    """Copy the body into `out` as it arrives; returns the bytes now in `out`."""
    window_start, window_bytes = time.monotonic(), 0
    while True:
        if clock.left() <= 0:
            raise DeadlineExceeded
        chunk = raw.read1(policy.chunk_size, decode_content=True)
        if not chunk:
            if clock.left() <= 0:  # the deadline shut the connection (zoo.http_session): not the body's end
                raise DeadlineExceeded
            return done
        out.write(chunk)
        done += len(chunk)
        progress.update(done)
        now = time.monotonic()
        window_bytes += len(chunk)
        if now - window_start >= policy.rate_window:
            rate = window_bytes / (now - window_start)
            if rate < policy.min_rate:
                raise Transient(f"too slow: {human(int(rate))}/s over {now - window_start:.0f} s, under "
                                 f"RDET_MIN_RATE ({human(int(policy.min_rate))}/s)")
            window_start, window_bytes = now, 0


def _attempt(session, url: str, dest: Path, policy: Policy, progress: TransferProgress, hint: str,
             clock: Deadline) -> _Outcome:
    """One GET into the .part, resuming from its current size."""
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges and sizes of the file itself, not of a gzip stream
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, headers=headers, stream=True, timeout=clock.bounded(policy.timeout)) as response:
        if clock.left() <= 0:  # the deadline cut the headers short (zoo.http_session): judge nothing by them
            raise DeadlineExceeded
        offset = _body_offset(response, have, part, redacted(url), hint)
        if offset is None:
            return _Outcome(True, 0)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            # decoded, a few hundred kilobytes of gzip could fill the disk; and no size nor range would hold
            raise DownloadError(f"{redacted(url)} came {encoding}-encoded, though rdet asked for the file itself "
                                f"(Accept-Encoding: identity); download it yourself and {hint}")
        body = content_length(response)
        total = offset + body if body is not None else _content_range_total(response)
        if body is not None:
            # a 206 body is what is missing; a 200 body replaces the .part, whose bytes are freed first
            _check_space(dest.parent, body - (have if offset == 0 else 0), dest.name)
        progress.start(dest.name, total, offset)
        try:
            with open(part, "ab" if offset else "wb") as out:
                sink = out if total is not None else _SpaceGuard(out, part, dest.name)
                done = stream_body(response.raw, sink, progress, offset, policy, clock)
        except OSError as e:  # writing the .part failed: a full disk, a read-only cache
            raise CacheError(f"cannot write {part}: {e.strerror or e}") from None
    if total is not None and done < total:
        raise Transient(f"connection closed after {done} of {total} bytes")
    # a 200 to a Range request is all the server has (it ignores ranges): asking again would bring the same body
    return _Outcome(total is not None or (have > 0 and offset == 0), done - offset)


NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                   urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


def _causes(e: BaseException):
    """`e` and everything it wraps (requests nests urllib3 errors, which nest socket errors)."""
    seen, stack = set(), [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        stack += [y for y in (x.__cause__, x.__context__, getattr(x, "reason", None), *getattr(x, "args", ()))
                  if isinstance(y, BaseException)]  # an ssl.SSLError's reason is a string


def _failing_host(e: BaseException, url: str) -> str:
    """The host rdet could not reach: the proxy when one was in the way, the target after a redirect, else the
    URL's own host."""
    if any(isinstance(x, (urllib3.exceptions.ProxyError, requests.exceptions.ProxyError)) for x in _causes(e)):
        for x in _causes(e):
            host = getattr(getattr(x, "conn", None), "host", None)  # urllib3's connection errors name the socket's
            if isinstance(host, str) and host:
                return f"the proxy {host} (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY)"
    for x in _causes(e):
        request = getattr(x, "request", None)
        if isinstance(getattr(request, "url", None), str):
            url = request.url
            break
    try:
        return urlparse(url).hostname or "the host"
    except ValueError:
        return "the host"


def _permanent(e: BaseException, url: str) -> str | None:
    """Why retrying cannot help (the host name does not resolve, the host refuses connections, a redirect rdet
    does not follow, a URL that cannot be), or None."""
    host = _failing_host(e, url)
    for x in _causes(e):
        if isinstance(x, (socket.gaierror, urllib3.exceptions.NameResolutionError)):
            if host.startswith("the proxy "):
                return f"cannot resolve the host name of {host}"
            return f"cannot resolve the host name {host} (no network, or a wrong URL or RDET_MIRROR?)"
        if isinstance(x, ConnectionRefusedError):
            return f"{host} refused the connection"
        if isinstance(x, ssl.SSLCertVerificationError):
            return f"the TLS certificate of {host} cannot be verified ({x.verify_message or x.reason})"
        if isinstance(x, Refused):
            return str(x)
        if isinstance(x, urllib3.exceptions.LocationParseError):
            return f"not a valid URL ({_text(x)})"
    return None


# what http.client says of an answer that is not HTTP, in words: they are not "broken mid-body", as the
# urllib3 ProtocolError wrapping them would otherwise read
_NOT_HTTP = ((http.client.RemoteDisconnected, "the server closed the connection without answering"),
             (http.client.LineTooLong, "the server sent a header line over 64 KB"),
             (http.client.BadStatusLine, "the server's answer is not HTTP"))


def _text(x: BaseException) -> str:
    """An exception's message without urllib3's '<Connection object at 0x...>: ' and wrapping quotes."""
    text = re.sub(r"<[^>]*>: ", "", str(x)).strip()
    while len(text) > 1 and text[0] + text[-1] in ("()", "''", '""'):
        text = text[1:-1].strip()
    return text[:200]


def reason(e: BaseException, url: str = "") -> str:
    """A short cause for a network error (the raw ones nest urllib3 reprs several levels deep). A refused
    connection or an unknown host come first: urllib3 bases its NewConnectionError on ConnectTimeoutError, so
    they would otherwise read 'timed out'."""
    permanent = _permanent(e, url)
    if permanent:
        return permanent
    causes = list(_causes(e))

    def first(kind):
        return next((x for x in causes if isinstance(x, kind)), None)

    if first(requests.TooManyRedirects):
        return f"more than {requests.models.DEFAULT_REDIRECT_LIMIT} redirects (a redirect loop?)"
    if first((requests.Timeout, socket.timeout, urllib3.exceptions.TimeoutError)):
        return "timed out"
    for kind, words in _NOT_HTTP:
        if first(kind):
            return words
    tls = first(ssl.SSLError)
    if tls:
        hint = " (a plain http server on an https URL?)" if tls.reason == "WRONG_VERSION_NUMBER" else ""
        return "TLS failed: " + re.sub(r"\[SSL: \w+\] |\s*\(_ssl\.c:\d+\)", "", _text(tls)) + hint
    if first((http.client.IncompleteRead, requests.exceptions.ChunkedEncodingError)):
        return "connection broken mid-body"
    if first(http.client.HTTPException):  # e.g. more than 100 headers (IncompleteRead is one too: it came first)
        return f"not a valid HTTP answer ({_text(first(http.client.HTTPException))})"
    if first(urllib3.exceptions.ProtocolError):
        return "connection broken mid-body"
    return _text(causes[-1]) or type(causes[-1]).__name__


def _part_verifies(part: Path, expected: str) -> bool:
    """True when the .part already is the whole right file (a server that overstates its length, a body
    without a length that did end)."""
    try:
        return part.stat().st_size > 0 and matches(sha256_file(part), expected)
    except FileNotFoundError:
        return False


def download_part(url: str, dest: Path, expected: str, policy: Policy, progress: TransferProgress,
                  hint: str) -> Path:
    """Attempts with exponential backoff until `<dest>.part` holds the whole body; each resumes where the last
    stopped. Returns the .part path (not yet verified). Raises DownloadError, keeping the .part to resume."""
    part, shown, clock = part_path(dest), redacted(url), Deadline(policy.deadline)
    with open_session(clock.left()) as session:  # trust_env stays on: proxy variables and .netrc work
        for retry in range(policy.retries + 1):
            try:
                outcome = _attempt(session, url, dest, policy, progress, hint, clock)
                if outcome.complete or outcome.received == 0 or _part_verifies(part, expected):
                    return part
                problem = "the body came without a length and ended before the file verified"
            except DeadlineExceeded:
                problem = None
            except Transient as e:
                problem = str(e)
            except NETWORK_ERRORS as e:
                cause = _permanent(e, url)
                if cause:
                    raise DownloadError(f"cannot download {shown}: {cause}; download it yourself and {hint}") \
                        from None
                problem = reason(e)
            except requests.RequestException as e:
                raise DownloadError(f"cannot download {shown}: {reason(e)}; download it yourself and {hint}") \
                    from None
            if problem and _part_verifies(part, expected):
                return part
            have = part.stat().st_size if part.exists() else 0
            if problem is None or clock.left() <= 0:
                if not have:  # cut before the body: an empty .part is nothing to resume
                    part.unlink(missing_ok=True)
                kept = f"{human(have)} kept: run again to resume" if have else "nothing received: run again"
                raise DownloadError(f"could not download {shown} within {clock.seconds:g} s (RDET_DEADLINE); "
                                    f"{kept}, or download it yourself and {hint}")
            if retry == policy.retries:
                raise DownloadError(f"could not download {shown} after {retry + 1} attempts ({problem}); run again "
                                    f"to resume, or download it yourself and {hint}")
            delay = min(policy.delay(retry), max(clock.left(), 0))
            progress.note(f"{dest.name}: {problem}; retry {retry + 1} of {policy.retries} in {delay:.3g} s")
            time.sleep(delay)
    return part  # pragma: no cover (the loop returns or raises)
