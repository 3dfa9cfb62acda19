"""The one requests.Session every network read of rdet goes through (weights, image URLs, the host probe), with
two rules a hostile server could otherwise break:

- the deadline holds from the first byte: every socket the session opens is shut down when the fetch's Deadline
  passes, since requests' timeouts bound each read, not the whole answer (a server sending its headers a byte a
  minute would hold rdet for ever);
- a redirect is followed only to a well-formed http(s) URL, and never from https down to plain http (the
  checksum of an unpinned file is only a prefix, and a redirect would silently drop the protection the URL chose).

The settings requests takes from the environment are checked on the way: an unusable proxy URL or CA bundle is
one line naming its variable, without the credentials in it, and a .netrc that is a pipe or device (requests
would block on it) is refused before any request (DownloadError). Refused, the exception of a refused redirect,
proxy or CA bundle, is read as permanent by zoo.http_fetch.reason: no retry can help.
"""
from __future__ import annotations

import os
import socket
import threading
import weakref
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationValueError

from retinanet.file_check import file_problem

from .errors import DownloadError
from .settings import redacted, usable_url


class Refused(requests.exceptions.RequestException):
    """A request rdet does not make (a redirect it does not follow, an unusable proxy or CA bundle setting); its
    text is the whole one-line reason, and retrying cannot help."""


class _Watchdog:
    """Shuts down the sockets of the connections it watches once `seconds` have passed."""

    def __init__(self, seconds: float):
        self._watched: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> its first socket
        self._lock, self.expired = threading.Lock(), False
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, connection, sock: socket.socket) -> None:
        with self._lock:
            self._watched[connection] = sock
        if self.expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            watched = list(self._watched.items())
        for connection, sock in watched:
            _shut(getattr(connection, "sock", None))  # the TLS socket once wrapped,
            _shut(sock)  # the plain one before (a closed or wrapped one has no descriptor left: nothing happens)

    def cancel(self) -> None:
        self._timer.cancel()


def _shut(sock) -> None:
    shutdown = getattr(sock, "shutdown", None)  # None, or a TLS-in-TLS transport, have none
    if shutdown is not None:
        try:
            shutdown(socket.SHUT_RDWR)  # a read blocked on it in another thread returns at once
        except OSError:
            pass


def _watched_pools(watchdog: _Watchdog) -> dict:
    """Pool classes whose connections report each new socket to `watchdog`."""

    def watched(base):
        class Watched(base):
            def _new_conn(self):
                sock = super()._new_conn()
                watchdog.watch(self, sock)
                return sock

        return Watched

    return {"http": type("WatchedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": watched(HTTPConnection)}),
            "https": type("WatchedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": watched(HTTPSConnection)})}


class _WatchedAdapter(HTTPAdapter):
    def __init__(self, pools: dict):
        self._pools = pools
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        try:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        except (LocationValueError, requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema):
            proxy = requests.utils.select_proxy(request.url, proxies)
            if not proxy:
                raise
            # one line that names the setting; requests' and urllib3's own text may hold the proxy's credentials
            socks = proxy.lower().startswith("socks")
            raise Refused(
                f"the proxy {redacted(proxy)[:200]!r} (HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) " +
                ("needs PySocks: pip install 'requests[socks]'" if socks else "is not a valid http(s) URL")) from None

    def cert_verify(self, conn, url, verify, cert):
        try:
            super().cert_verify(conn, url, verify, cert)
        except OSError as e:  # requests' own check of the paths, before any connection
            raise Refused(f"{e} (REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE?)") from None

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # a SOCKS manager has pools of its own kind
            manager.pool_classes_by_scheme = self._pools
        return manager


class _Session(requests.Session):
    def get_redirect_target(self, resp):
        try:
            target = super().get_redirect_target(resp)
        except UnicodeDecodeError:  # requests reads a Location as UTF-8
            resp.close()
            raise Refused("the server redirected to a Location that is not UTF-8 text") from None
        if target is None:
            return None
        problem = redirect_problem(resp.url, target)
        if problem:
            resp.close()
            raise Refused(problem)
        return target


def redirect_problem(current: str, location: str) -> str | None:
    """Why a redirect from `current` to `location` (as the Location header has it) is not followed, or None."""
    try:
        target = urljoin(current, location.strip())
    except ValueError:
        target = ""
    if not usable_url(target, ("http", "https")):
        return f"the server redirected to {redacted(location)[:200]!r}, not a valid http(s) URL"
    if urlsplit(current).scheme == "https" and urlsplit(target).scheme == "http":
        return (f"the server redirected from https to plain http ({redacted(target)[:200]}), which rdet does not "
                "follow")
    return None


_NETRC_MAX_BYTES = 1 << 20


def _netrc_problem() -> str | None:
    """Why the .netrc file requests would read (NETRC, else ~/.netrc or ~/_netrc) cannot be: opening a FIFO waits
    for a writer for ever, /dev/zero never ends. None when there is none, or a plain file."""
    names = [os.environ["NETRC"]] if "NETRC" in os.environ else ["~/.netrc", "~/_netrc"]
    for path in (os.path.expanduser(name) for name in names):
        if os.path.exists(path):  # the first that exists is the one requests reads, as here
            problem = file_problem(path)
            if problem is None and os.path.getsize(path) > _NETRC_MAX_BYTES:
                problem = f"over {_NETRC_MAX_BYTES >> 20} MiB"  # a credentials file never is
            setting = " (NETRC)" if "NETRC" in os.environ else ""
            return problem and f"the .netrc file {path}{setting}: {problem}; fix or remove it"
    return None


@contextmanager
def open_session(seconds: float):
    """A session (proxy variables and .netrc honoured) whose sockets are all shut down after `seconds`.
    DownloadError when the .netrc file cannot be read safely."""
    problem = _netrc_problem()
    if problem:
        raise DownloadError(problem)
    watchdog = _Watchdog(seconds)
    pools = _watched_pools(watchdog)
    session = _Session()
    for prefix in ("https://", "http://"):
        session.mount(prefix, _WatchedAdapter(pools))
    try:
        with session:
            yield session
    finally:
        watchdog.cancel()
