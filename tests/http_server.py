"""A scriptable HTTP file server on 127.0.0.1 for tests: serves bytes, honours Range, misbehaves on request.

    def test_x(http_server):  # the pytest fixture, from conftest.py
        url = http_server.add("/w/model.pth", data, drop_after=65536)  # first GET breaks after 64 KiB
        ...
        assert http_server.requests_for("/w/model.pth")[1].range_start == 65536

Each path is scripted with `add(path, data, **behaviour)`; behaviours that happen "N times" apply to the first N
GETs of that path, in this order: `fail` (answer `fail_status`), `stall` (hang mid-body), `drop_after` (close
the connection mid-body). `status` answers every GET with that status (404, 403, 410...); `ranges=False` ignores
Range headers (always 200 and the whole file); `throttle` slows every body down (with `chunk=1`, a trickle);
`overstate=N` claims N more bytes in Content-Length than it sends; `no_length` sends no Content-Length (the
body ends when the connection closes); `headers` adds headers to every answer with a body. Unknown paths get 404.
Proxy-style requests (`GET http://host/path`) are served by path, so the server can stand in for a proxy.

RawServer answers below HTTP, for what an HTTP server library cannot send: each connection's request is handed
to `reply(request) -> iterable of bytes`, each piece written as it comes (a generator may sleep between pieces:
headers a byte at a time, a silence, a close before the status line).
"""
from __future__ import annotations

import hashlib
import random
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Route:
    data: bytes
    status: int = 200
    fail: int = 0
    fail_status: int = 500
    stall: float = 0.0
    stall_after: int = 0
    stalls: int = 1
    drop_after: int | None = None
    drops: int = 1
    ranges: bool = True
    throttle: float = 0.0
    chunk: int = 16384
    overstate: int = 0
    no_length: bool = False
    headers: dict | None = None  # sent with every 200/206 answer, e.g. a Content-Encoding the client never asked for


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict  # header name (lower case) -> value
    status: int = 0
    sent: int = 0  # body bytes written before the response ended or broke

    @property
    def range_start(self) -> int | None:
        m = _RANGE.match(self.headers.get("range", ""))
        return int(m.group(1)) if m else None


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        path = urlsplit(self.path).path  # a proxy request carries the whole URL
        req = Request("GET", path, {k.lower(): v for k, v in self.headers.items()})
        self.server.owner._record(req)
        route, plan = self.server.owner._plan(path)
        try:
            self._answer(req, route, plan)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout on its side): nothing to do

    def _answer(self, req: Request, route: Route | None, plan: str) -> None:
        if route is None or plan in ("status", "fail"):
            status = 404 if route is None else route.status if plan == "status" else route.fail_status
            return self._error(req, status)
        data, start, end = route.data, 0, len(route.data)
        m = _RANGE.match(req.headers.get("range", "")) if route.ranges else None
        if m:
            start = int(m.group(1))
            end = min(int(m.group(2)) + 1, end) if m.group(2) else end
            if start >= len(data):
                return self._error(req, 416, {"Content-Range": f"bytes */{len(data)}"})
        req.status = 206 if m else 200
        self.send_response(req.status)
        if not route.no_length:
            self.send_header("Content-Length", str(end - start + route.overstate))
        self.send_header("Accept-Ranges", "bytes" if route.ranges else "none")
        if m:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        for name, value in (route.headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        limit = {"stall": route.stall_after, "drop": route.drop_after}.get(plan, end - start)
        self._send_body(req, route, data[start:start + min(limit, end - start)])
        if plan == "stall":
            self.server.owner.stopping.wait(route.stall)
        self.close_connection = True

    def _send_body(self, req: Request, route: Route, body: bytes) -> None:
        for i in range(0, len(body), route.chunk):
            if route.throttle and self.server.owner.stopping.wait(route.throttle):
                return
            self.wfile.write(body[i:i + route.chunk])
            self.wfile.flush()
            req.sent += len(body[i:i + route.chunk])

    def _error(self, req: Request, status: int, headers: dict | None = None) -> None:
        req.status = status
        body = f"{status} {self.responses.get(status, ('',))[0]}\n".encode()
        self.send_response(status)
        for k, v in {"Content-Type": "text/plain", "Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: "HTTPTestServer"


class HTTPTestServer:
    """The server: `add` files, build URLs with `url`, inspect `requests`. A context manager."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._counts: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def add(self, path: str, data: bytes = b"", **behaviour) -> str:
        """Serve `data` at `path` with the behaviours of Route (see the module doc); returns the URL."""
        path = "/" + path.lstrip("/")
        with self._lock:
            self.routes[path] = Route(data, **behaviour)
            self._counts[path] = {"fail": 0, "stall": 0, "drop": 0}
        return self.url(path)

    def requests_for(self, path: str) -> list[Request]:
        path = "/" + path.lstrip("/")
        return [r for r in self.requests if r.path == path]

    def bytes_sent(self, path: str) -> int:
        """Body bytes served for `path` over all requests."""
        return sum(r.sent for r in self.requests_for(path))

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def _plan(self, path: str) -> tuple[Route | None, str]:
        """The route and what to do with this GET: 'status', 'fail', 'stall', 'drop' or 'serve'."""
        with self._lock:
            route = self.routes.get(path)
            if route is None or route.status != 200:
                return route, "status"
            counts = self._counts[path]
            for plan, times in (("fail", route.fail), ("stall", route.stalls if route.stall else 0),
                                ("drop", route.drops if route.drop_after is not None else 0)):
                if counts[plan] < times:
                    counts[plan] += 1
                    return route, plan
            return route, "serve"

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "HTTPTestServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawServer:
    """A TCP server on 127.0.0.1 that writes what `reply(request_bytes)` yields, then closes. A context manager."""

    def __init__(self, reply):
        self.reply, self.requests = reply, []
        self.stopping = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) < 1 << 20:
                    data = conn.recv(65536)
                    if not data:
                        break
                    request += data
                self.requests.append(request)
                for piece in self.reply(request):
                    if self.stopping.is_set():
                        return
                    conn.sendall(piece)
            except OSError:
                pass  # the client gave up: nothing to do

    def close(self) -> None:
        self.stopping.set()
        self._sock.close()
        self._thread.join(1)

    def __enter__(self) -> "RawServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def payload(size: int = 300_000, seed: int = 0) -> tuple[bytes, str]:
    """Random bytes (the same for a seed) and the first 8 hex digits of their SHA-256, as a manifest has them."""
    data = random.Random(seed).randbytes(size)
    return data, hashlib.sha256(data).hexdigest()[:8]
