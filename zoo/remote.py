"""Small network reads beside the weights downloads: an image from an http(s) URL for `rdet predict`, and a
quick reachability probe of the weights host for `rdet demo` and `rdet doctor`.

Both use the downloads' settings (RDET_TIMEOUT, RDET_OFFLINE, RDET_MIRROR, the proxy variables through requests)
and their one-line error wording; an image is read as a weights file is (the same deadline and minimum rate, so a
server that trickles cannot hold rdet forever) and must be at most `max_bytes` long, however the server describes
it, so a hostile server cannot fill memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import requests

from .http_fetch import NETWORK_ERRORS, Deadline, DeadlineExceeded, Transient, content_length, reason, stream_body
from .http_session import open_session
from .progress import TransferProgress, human
from .settings import Policy, is_offline, mirrored, redacted
from .errors import DownloadError

MAX_IMAGE_BYTES = 64 * 1000 * 1000  # larger than any photo worth detecting on; the pixel limit applies after
PROBE_TIMEOUT = 4.0  # seconds: a reachable host answers well within this


class _CappedBody:
    """The body in memory, refused as soon as it passes `max_bytes` (a server may understate or omit its length)."""

    def __init__(self, shown: str, max_bytes: int):
        self.shown, self.max_bytes, self.body = shown, max_bytes, bytearray()

    def write(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > self.max_bytes:
            raise DownloadError(f"{self.shown}: more than the {human(self.max_bytes)} limit for an image")


def fetch_image_bytes(url: str, max_bytes: int = MAX_IMAGE_BYTES, offline: bool | None = None) -> bytes:
    """The body of an http(s) URL, at most `max_bytes` long, read within the downloads' deadline and minimum
    rate (one attempt, no retries); DownloadError (one line) for anything else."""
    shown = redacted(url)
    try:
        scheme = urlparse(url).scheme
    except ValueError as e:  # 'Invalid IPv6 URL' and the like, which would not name the URL
        raise DownloadError(f"{shown}: not a valid URL ({e})") from None
    if scheme not in ("http", "https"):
        raise DownloadError(f"{shown}: only http:// and https:// URLs are read")
    if is_offline(offline):
        raise DownloadError(f"{shown}: rdet is offline (--offline or RDET_OFFLINE), URLs are not read")
    policy = Policy.resolve()
    clock = Deadline(policy.deadline)
    late = f"{shown}: not read within {clock.seconds:g} s (RDET_DEADLINE)"
    try:
        with open_session(clock.left()) as session, \
                session.get(url, stream=True, timeout=clock.bounded(policy.timeout),
                            headers={"Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise DownloadError(f"{shown}: HTTP {response.status_code}")
            length = content_length(response)
            if length is not None and length > max_bytes:
                raise DownloadError(f"{shown}: {human(length)} is over the {human(max_bytes)} limit for an image")
            out = _CappedBody(shown, max_bytes)
            stream_body(response.raw, out, TransferProgress(), 0, policy, clock)
            return bytes(out.body)
    except DeadlineExceeded:
        raise DownloadError(late) from None
    except Transient as e:
        raise DownloadError(f"{shown}: {e}") from None
    except NETWORK_ERRORS + (requests.RequestException,) as e:
        if clock.left() <= 0:  # the deadline shut the connection (zoo.http_session)
            raise DownloadError(late) from None
        raise DownloadError(f"{shown}: cannot download ({reason(e, url)})") from None


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

    def ask():  # in a thread: a stuck DNS lookup is not covered by requests' timeouts nor the session's deadline
        try:
            with open_session(2 * timeout) as session:
                answer["status"] = session.head(url, timeout=(timeout, timeout), allow_redirects=True).status_code
        except NETWORK_ERRORS + (requests.RequestException,) as e:
            answer["error"] = reason(e, url)
        except DownloadError as e:  # a setting the session refuses (zoo.http_session)
            answer["error"] = str(e)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(2 * timeout)
    seconds = time.monotonic() - began
    if "status" in answer:
        return Probe(url, True, f"HTTP {answer['status']} in {seconds:.1f} s", seconds)
    return Probe(url, False, answer.get("error", f"no answer in {2 * timeout:.0f} s"), seconds)
