"""Download settings, from arguments or the environment, each checked to be a usable number.

RDET_RETRIES (retries after the first attempt), RDET_BACKOFF (the first retry's delay in seconds, doubled each
time), RDET_TIMEOUT (connect and read timeout in seconds), RDET_DEADLINE (seconds one download may take in all,
retries included), RDET_MIN_RATE (bytes per second: a transfer slower than this over RDET_RATE_WINDOW seconds
is dropped and retried), RDET_LOCK_TIMEOUT (seconds to wait for another rdet process fetching the same file),
RDET_MIRROR (a base URL that replaces https://download.openmmlab.com), RDET_OFFLINE=1 (never use the network).
Proxies come from the standard variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), which requests honours.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlsplit, urlunsplit
from urllib.request import url2pathname

from .errors import DownloadError

PUBLISHED_PREFIXES = ("http://download.openmmlab.com", "https://download.openmmlab.com")
_MAX_DELAY = 60.0
_MAX_SECONDS = 7 * 24 * 3600.0  # a week: anything longer is a typo, and huge values overflow socket timeouts


def _number(name: str, raw, kind, low: float, high: float, low_open: bool = False):
    """`raw` as a finite `kind` within [low, high] (or (low, high] when low_open); DownloadError otherwise."""
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not math.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise DownloadError(f"{name} must be a finite {'whole ' if kind is int else ''}number {bound} and at most "
                            f"{high:g}, not {str(raw)!r}")
    return value


def _setting(value, env: str, kind, default, low: float, high: float, low_open: bool = False):
    """The argument when given, else $env when set, else the default; checked either way."""
    if value is None:
        raw = os.environ.get(env, "").strip()
        if not raw:
            return default
        return _number(env, raw, kind, low, high, low_open)
    return _number(env.removeprefix("RDET_").lower(), value, kind, low, high, low_open)


@dataclass(frozen=True)
class Policy:
    """How hard to try and for how long.

    retries after the first attempt, backoff base, (connect, read) timeouts, chunk size, the total deadline of
    one fetch, the minimum rate over a window, and how long to wait for another process's lock."""

    retries: int = 5
    backoff: float = 1.0
    timeout: tuple[float, float] = (10.0, 60.0)
    chunk_size: int = 1 << 20
    deadline: float = 3 * 3600.0
    min_rate: float = 1000.0
    rate_window: float = 60.0
    lock_timeout: float = 3 * 3600.0

    @classmethod
    def resolve(cls, retries=None, backoff=None, timeout=None, chunk_size=None, deadline=None, min_rate=None,
                rate_window=None, lock_timeout=None) -> "Policy":
        """Arguments win over the RDET_* variables, which win over the defaults."""
        if isinstance(timeout, (tuple, list)):
            timeout = tuple(_number("timeout", t, float, 0, _MAX_SECONDS, low_open=True) for t in timeout)
        else:
            seconds = _setting(timeout, "RDET_TIMEOUT", float, None, 0, _MAX_SECONDS, low_open=True)
            timeout = cls.timeout if seconds is None else (seconds, seconds)
        return cls(
            retries=_setting(retries, "RDET_RETRIES", int, cls.retries, 0, 1000),
            backoff=_setting(backoff, "RDET_BACKOFF", float, cls.backoff, 0, _MAX_DELAY),
            timeout=timeout,
            chunk_size=_number("chunk_size", chunk_size or cls.chunk_size, int, 1, 1 << 30),
            deadline=_setting(deadline, "RDET_DEADLINE", float, cls.deadline, 0, _MAX_SECONDS, low_open=True),
            min_rate=_setting(min_rate, "RDET_MIN_RATE", float, cls.min_rate, 0, 1e12),
            rate_window=_setting(rate_window, "RDET_RATE_WINDOW", float, cls.rate_window, 0, _MAX_SECONDS,
                                 low_open=True),
            lock_timeout=_setting(lock_timeout, "RDET_LOCK_TIMEOUT", float, cls.lock_timeout, 0, _MAX_SECONDS),
        )

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): exponential, capped."""
        return min(self.backoff * 2 ** retry, _MAX_DELAY)


def is_offline(offline: bool | None = None) -> bool:
    """The explicit argument, else RDET_OFFLINE."""
    if offline is not None:
        return offline
    return os.environ.get("RDET_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def usable_url(url: str, schemes=("http", "https", "file")) -> bool:
    """True when `url` has one of `schemes` and either names an absolute local path (file:) or has a host name that
    can be looked up (labels of 1-63 characters) and a port up to 65535: what requests would refuse, or retry in
    vain."""
    try:
        parts = urlsplit(url)
        parts.port  # ValueError when not a number or out of range
    except ValueError:  # e.g. "http://[::1" (an unclosed IPv6 address)
        return False
    if parts.scheme not in schemes:
        return False
    if parts.scheme == "file":  # an absolute path on this machine
        return parts.netloc in ("", "localhost") and parts.path.startswith("/")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal, which urlsplit has checked
        return True
    try:
        return bool(host) and not _NOT_IN_A_HOST.search(host) and bool(host.encode("idna"))
    except UnicodeError:  # an empty or over-long label
        return False


_NOT_IN_A_HOST = re.compile(r"[\s\x00-\x1f\x7f<>\"{}|\\^`%/?#]")  # what urllib3 refuses too, at download time


def mirror_base() -> str:
    """$RDET_MIRROR without its trailing slash ("" when unset); DownloadError when it is not a usable URL."""
    mirror = os.environ.get("RDET_MIRROR", "").strip().rstrip("/")
    if mirror and not usable_url(mirror):
        raise DownloadError(f"RDET_MIRROR must be an http(s) or file URL such as https://mirror.example.org/openmmlab, "
                            f"not {redacted(mirror)!r}")
    if mirror and (urlsplit(mirror).query or urlsplit(mirror).fragment or mirror.endswith(("?", "#"))):
        # the file's path is appended: after a ? or # it would not be part of the path, and another file is asked
        raise DownloadError(f"RDET_MIRROR must be a base URL without a ?query or #fragment, not {redacted(mirror)!r}")
    return mirror


def mirrored(url: str) -> str:
    """`url` with the published download.openmmlab.com prefix replaced by $RDET_MIRROR, when set."""
    mirror = mirror_base()
    if mirror:
        for prefix in PUBLISHED_PREFIXES:
            if url.startswith(prefix + "/"):
                return mirror + url[len(prefix):]
    return url


def redacted(url: str) -> str:
    """`url` fit to print: credentials in it (https://user:secret@host/, https://token@host/) become ***."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))
    except ValueError:  # unparseable (e.g. an unclosed IPv6 bracket): still no user:secret@ shown
        return re.sub(r"(?<=://).*@", "***@", url)


def local_path(url: str) -> Path:
    """The path a file:// URL names."""
    return Path(url2pathname(urlparse(url).path))
