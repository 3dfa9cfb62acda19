"""Small network reads beside the weights downloads: an image from an http(s) URL for `rdet predict`, and a
quick reachability probe of the weights host for `rdet demo` and `rdet doctor`.

Both use the downloads' settings (RDET_TIMEOUT, RDET_OFFLINE, RDET_MIRROR, the proxy variables through requests)
and their one-line error wording; an image is size-limited and must be at most `max_bytes` long, however the
server describes it, so a hostile server cannot fill memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import requests

from .http_fetch import _reason
from .progress import human
from .settings import Policy, is_offline, mirrored
from .errors import DownloadError

MAX_IMAGE_BYTES = 64 * 1000 * 1000  # larger than any photo worth detecting on; the pixel limit applies after
PROBE_TIMEOUT = 4.0  # seconds: a reachable host answers well within this


def fetch_image_bytes(url: str, max_bytes: int = MAX_IMAGE_BYTES, offline: bool | None = None) -> bytes:
    """The body of an http(s) URL, at most `max_bytes` long; DownloadError (one line) for anything else."""
    try:
        scheme = urlparse(url).scheme
    except ValueError as e:  # 'Invalid IPv6 URL' and the like, which would not name the URL
        raise DownloadError(f"{url}: not a valid URL ({e})") from None
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: only http:// and https:// URLs are read")
    if is_offline(offline):
        raise DownloadError(f"{url}: rdet is offline (--offline or RDET_OFFLINE), URLs are not read")
    policy = Policy.resolve()
    try:
        with requests.get(url, stream=True, timeout=policy.timeout,
                          headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise DownloadError(f"{url}: HTTP {response.status_code}")
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise DownloadError(f"{url}: {human(int(length))} is over the {human(max_bytes)} limit for an image")
            body = bytearray()
            for chunk in response.iter_content(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise DownloadError(f"{url}: more than the {human(max_bytes)} limit for an image")
            return bytes(body)
    except requests.RequestException as e:
        raise DownloadError(f"{url}: cannot download ({_reason(e, url)})") from None


@dataclass(frozen=True)
class Probe:
    """Whether a URL's host answered, and if not, why (one line)."""

    url: str
    ok: bool
    detail: str
    seconds: float


def probe(url: str, timeout: float = PROBE_TIMEOUT, offline: bool | None = None) -> Probe:
    """A HEAD request to `url` (after RDET_MIRROR) with one short timeout and no retries: any HTTP answer means
    the host is reachable (a 404 from a mirror still says it is up; the download itself reports the file)."""
    import time

    url = mirrored(url)
    if urlparse(url).scheme == "file":
        from .settings import local_path

        ok = local_path(url).is_file()
        return Probe(url, ok, "local file" if ok else "no such local file", 0.0)
    if is_offline(offline):
        return Probe(url, False, "offline mode (--offline or RDET_OFFLINE)", 0.0)
    import threading

    began, answer = time.monotonic(), {}

    def ask():  # in a thread: a stuck DNS lookup is not covered by requests' timeouts
        try:
            answer["status"] = requests.head(url, timeout=(timeout, timeout), allow_redirects=True).status_code
        except requests.RequestException as e:
            answer["error"] = _reason(e, url)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(2 * timeout)
    seconds = time.monotonic() - began
    if "status" in answer:
        return Probe(url, True, f"HTTP {answer['status']} in {seconds:.1f} s", seconds)
    return Probe(url, False, answer.get("error", f"no answer in {2 * timeout:.0f} s"), seconds)
