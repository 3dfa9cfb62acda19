"""Download settings, from arguments or the environment.

RDET_RETRIES (retries after the first attempt), RDET_BACKOFF (the first retry's delay in seconds, doubled each
time), RDET_TIMEOUT (connect and read timeout in seconds), RDET_MIRROR (a base URL that replaces
http(s)://download.openmmlab.com), RDET_OFFLINE=1 (never use the network). Proxies come from the standard
variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), which requests honours.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from .errors import DownloadError

PUBLISHED_PREFIXES = ("http://download.openmmlab.com", "https://download.openmmlab.com")
_MAX_DELAY = 60.0

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

