"""The HTTP endpoint of ``hpsedge serve``: a small gate in front of tritonserver's HTTP server.

Why it exists: tritonserver (the build PyTriton bundles) sizes the buffer of a JSON input from the shape the
request *declares*, before it reads the data. A 100-byte body declaring an image ``[100000, 100000, 3]``
makes it allocate 30 GB; ``std::bad_alloc`` then aborts the whole server. tritonserver has no option that
bounds an HTTP request (no body limit, and model-config dims cannot carry a maximum), so ``hpsedge serve``
binds tritonserver's own HTTP server to a private loopback port and puts this gate on the public one. Every
request passes here first:

* only the read-only KServe v2 routes (health, server and model metadata, model config) and ``POST
  .../infer`` are forwarded; the shared-memory, repository, logging and trace APIs are refused;
* an inference body needs a ``Content-Length`` no larger than ``limits.max_body_bytes`` (no chunked or
  compressed bodies: a small gzip body can declare gigabytes);
* the JSON part is parsed here and every input's declared ``shape`` x ``datatype`` is summed; a request
  declaring more than ``limits.max_tensor_bytes`` (or a negative dim, a rank above 8, an unknown or
  ``BYTES`` datatype, a shared-memory region) is refused before tritonserver sees it;
* bodies held in memory at once are bounded too (``limits.max_inflight_bytes``; past it: ``503``), and
  so are connections (``max_connections``) and the time a client may take to send its body.

Refusals are one JSON line ``{"error": "..."}`` with the status a client expects (400, 404, 405, 411, 413,
415, 503). The gRPC endpoint is tritonserver's own: it checks the declared shape against the bytes sent
before allocating, so it needs no gate (``hpsedge serve --no-http`` serves gRPC only).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

#: bytes per element of the KServe v2 datatypes a request may declare (BYTES has no fixed size: refused)
DTYPE_BYTES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
               "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
MAX_RANK = 8
MAX_INPUTS = 16
_NAME = r"[A-Za-z0-9_.\-]{1,128}"
_GET_ROUTES = re.compile(
    rf"^/v2(?:/health/(?:live|ready)|/models/{_NAME}(?:/versions/[0-9]{{1,9}})?(?:/ready|/config|/stats)?)?/?$"
)
_INFER_ROUTE = re.compile(rf"^/v2/models/{_NAME}(?:/versions/[0-9]{{1,9}})?/infer/?$")
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "content-length", "host"}


@dataclass(frozen=True)
class RequestLimits:
    """Bounds of one HTTP request (bytes); see :func:`limits_for`."""

    max_body_bytes: int
    max_tensor_bytes: int
    max_inflight_bytes: int
    body_timeout_s: float = 60.0


def limits_for(max_side: int, max_persons: int, max_batch: int, network_input_bytes: int) -> RequestLimits:
    """Limits that admit the largest legal request of either bound model, and nothing much larger.

    ``hpsedge``: an image ``[max_side, max_side, 3]`` uint8 plus ``max_persons`` boxes; the network model:
    ``max_batch`` x its per-row input bytes. The body may add 1 MiB of JSON header; up to four largest
    bodies may be held at once.
    """
    tensors = max(max_side * max_side * 3 + max_persons * 4 * 4, max_batch * network_input_bytes)
    body = tensors + (1 << 20)
    return RequestLimits(max_body_bytes=body, max_tensor_bytes=tensors, max_inflight_bytes=4 * body)


class RequestRefused(Exception):
    """A request the gate does not forward: an HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _int_header(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,15}", value.strip()):
        raise RequestRefused(400, f"{name} must be a non-negative integer")
    return int(value.strip())


def declared_bytes(header: Any, max_tensor_bytes: int) -> int:
    """Bytes the inputs of a KServe v2 JSON inference header declare; :class:`RequestRefused` if malformed.

    Works on Python ints (no overflow) and stops as soon as the running total passes the limit.
    """
    if not isinstance(header, dict):
        raise RequestRefused(400, "the inference request must be a JSON object")
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestRefused(400, "the inference request needs a non-empty 'inputs' list")
    if len(inputs) > MAX_INPUTS:
        raise RequestRefused(400, f"{len(inputs)} inputs in one request; at most {MAX_INPUTS} are taken")
    total = 0
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict) or not isinstance(inp.get("name"), str):
            raise RequestRefused(400, f"input {i} must be an object with a 'name'")
        name = inp["name"][:64]
        shape, dtype = inp.get("shape"), inp.get("datatype")
        if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(
            type(d) is int and d >= 0 for d in shape
        ):
            raise RequestRefused(400, f"input '{name}': 'shape' must be a list of at most {MAX_RANK} integers ≥ 0")
        if dtype not in DTYPE_BYTES:
            raise RequestRefused(400, f"input '{name}': datatype {str(dtype)[:16]!r} is not taken here")
        params = inp.get("parameters")
        if isinstance(params, dict) and any(str(k).startswith("shared_memory") for k in params):
            raise RequestRefused(400, f"input '{name}': shared-memory inputs are not taken over HTTP")
        n = DTYPE_BYTES[dtype]
        for d in shape:
            n *= d
            if n > max_tensor_bytes:
                break
        total += n
        if total > max_tensor_bytes:
            raise RequestRefused(
                413, f"input '{name}' declares shape {shape[:MAX_RANK]} {dtype}: the request would take more "
                     f"than {max_tensor_bytes} bytes, this server's limit")
    outputs = header.get("outputs")
    if isinstance(outputs, list):
        for out in outputs:
            params = out.get("parameters") if isinstance(out, dict) else None
            if isinstance(params, dict) and any(str(k).startswith("shared_memory") for k in params):
                raise RequestRefused(400, "shared-memory outputs are not taken over HTTP")
    return total


class _Budget:
    """Bytes of request bodies held in memory at once (a counter; never blocks)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type, front: HttpFront) -> None:
        self.front = front
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.front._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):  # too many connections: answer and close without a thread
                request.sendall(_plain(503, "too many connections; retry later", close=True))
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.front._slots.release()


def _plain(status: int, message: str, close: bool = False) -> bytes:
    body = json.dumps({"error": message}).encode()
    reason = http.client.responses.get(status, "Error")
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode() + body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # seconds a connection may sit idle or stall mid-request line / headers
    server_version = "hpsedge"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http %s " + format, self.client_address[0], *args)

    # -- helpers
    def _refuse(self, status: int, message: str, close: bool = False) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str, body: bytes | None) -> None:
        front = self.server.front
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        conn = http.client.HTTPConnection("127.0.0.1", front.upstream_port, timeout=front.upstream_timeout_s)
        try:
            conn.request(method, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._refuse(503, f"the inference server is not reachable ({type(exc).__name__})")
            return
        finally:
            conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _read_body(self, length: int) -> bytes:
        limits = self.server.front.limits
        deadline = time.monotonic() + limits.body_timeout_s
        buf = bytearray()
        while len(buf) < length:
            if time.monotonic() > deadline:
                raise RequestRefused(408, f"the request body took longer than {limits.body_timeout_s:.0f} s")
            chunk = self.rfile.read1(min(1 << 20, length - len(buf)))
            if not chunk:
                raise RequestRefused(400, "the request body ended before its Content-Length")
            buf += chunk
        return bytes(buf)

    # -- methods
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if not _GET_ROUTES.match(path):
            self._refuse(404, f"no such endpoint: GET {path[:100]}")
            return
        if self.headers.get("Content-Length") not in (None, "0"):
            self._refuse(400, "GET requests carry no body", close=True)
            return
        self._forward("GET", None)

    def do_HEAD(self) -> None:
        self._refuse(405, "HEAD is not served")

    def do_POST(self) -> None:
        front = self.server.front
        limits = front.limits
        path = self.path.split("?", 1)[0]
        if not _INFER_ROUTE.match(path):
            self._refuse(404 if not path.startswith("/v2/models/") else 405,
                         f"no such endpoint: POST {path[:100]} (only /v2/models/<model>/infer)", close=True)
            return
        taken = 0
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                raise RequestRefused(411, "chunked request bodies are not taken; send a Content-Length")
            encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding != "identity":
                raise RequestRefused(415, f"Content-Encoding {encoding[:20]!r} is not taken; send the body uncompressed")
            length = _int_header(self.headers.get("Content-Length"), "Content-Length")
            if length is None:
                raise RequestRefused(411, "an inference request needs a Content-Length")
            if length > limits.max_body_bytes:
                raise RequestRefused(413, f"the request body has {length} bytes; this server takes at most "
                                          f"{limits.max_body_bytes}")
            if not front.budget.take(length):
                raise RequestRefused(503, "the server holds too many request bodies right now; retry later")
            taken = length
            body = self._read_body(length)
            json_len = _int_header(self.headers.get("Inference-Header-Content-Length"),
                                   "Inference-Header-Content-Length")
            head = body if json_len is None else body[:json_len]
            if json_len is not None and json_len > length:
                raise RequestRefused(400, "Inference-Header-Content-Length is larger than the body")
            try:
                header = json.loads(head)
            except (ValueError, RecursionError):
                raise RequestRefused(400, "the inference request is not valid JSON") from None
            declared_bytes(header, limits.max_tensor_bytes)
            self._forward("POST", body)
        except RequestRefused as exc:
            # after a refused body the stream may hold unread bytes: close the connection
            self._refuse(exc.status, exc.message, close=True)
        finally:
            if taken:
                front.budget.give(taken)

    def _not_served(self) -> None:
        self._refuse(405, f"{self.command} is not served", close=True)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_served


class HttpFront:
    """The gate: listens on ``(host, port)``, forwards what passes to tritonserver on ``127.0.0.1:upstream_port``."""

    def __init__(self, host: str, port: int, upstream_port: int, limits: RequestLimits,
                 max_connections: int = 256, upstream_timeout_s: float = 300.0) -> None:
        self.limits = limits
        self.upstream_port = int(upstream_port)
        self.upstream_timeout_s = upstream_timeout_s
        self.budget = _Budget(limits.max_inflight_bytes)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._server = _Server((host, int(port)), _Handler, self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="hpsedge-http-front", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
