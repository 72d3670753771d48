"""A Mezmo-compatible ``/logs/ingest`` server on loopback, for tests and benchmarks.

It checks what the real API checks (basic auth with the ingestion key, ``hostname`` and
``now`` query parameters, gzip bodies, the 10 MB limit, the line schema), stores what it
accepts, and injects faults on demand: error statuses with ``Retry-After``, timeouts,
connection resets and slow answers. Failed requests store nothing, so a client that does
not retry loses lines visibly.

    with MezmoServer(ingestion_key="k") as server:
        sink = MezmoSink(server.url, ingestion_key="k")
"""

from __future__ import annotations

import base64
import contextlib
import random
import socket
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import orjson

_inflater: Any = zlib.decompressobj
_INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:  # ISA-L inflates gzip several times faster: less of a benchmark's CPU goes to the server
    from isal import isal_zlib

    _inflater = isal_zlib.decompressobj
    _INFLATE_ERRORS = (zlib.error, isal_zlib.error)  # type: ignore[assignment]  # stub says instance
except ImportError:  # pragma: no cover - the fast/dev extras install it
    pass

__all__ = ["Fault", "MezmoServer", "ReceivedRequest"]

#: A fault is an HTTP status to answer, or "timeout" (answer after the client gave up)
#: or "reset" (close the connection without an answer).
Fault = int | str


class _Body(msgspec.Struct):
    lines: list[msgspec.Raw]


_COUNTING = msgspec.json.Decoder(_Body)


@dataclass(slots=True)
class ReceivedRequest:
    """What the server saw of one request, and how it answered."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body_bytes: int
    decoded_bytes: int = 0
    status: int = 0
    lines: int = 0
    error: str = ""


@dataclass(slots=True)
class _PlannedFault:
    fault: Fault
    retry_after: str | None = None


@dataclass(slots=True)
class _Counters:
    requests: int = 0
    accepted: int = 0
    lines: int = 0
    bytes: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class _Reject(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the benchmark would otherwise measure TCP setup
    disable_nagle_algorithm = True
    timeout = 60
    server: _Server

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: test output is not the place for access logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: MezmoServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client vanishes mid-request (killed shippers do that on purpose)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class MezmoServer:
    """Mezmo ingest API on ``127.0.0.1``; ``start()`` it or use it as a context manager.

    ``store=False`` only counts lines (benchmarks); ``validate=False`` checks the schema of
    the first and last line of each request instead of every line. ``count_later`` (with
    both) keeps each accepted body as it came and decodes and counts them when
    :meth:`counters` is read: a benchmark on one machine then measures the tool, not the
    tool plus the receiver's inflating and parsing on the same cores (a real ingest service
    runs elsewhere). A body that turns out bad then raises there.
    """

    def __init__(
        self,
        ingestion_key: str = "test-ingestion-key",
        *,
        store: bool = True,
        validate: bool = True,
        max_body_bytes: int = 10_000_000,
        timeout_sleep: float = 2.0,
        host: str = "127.0.0.1",
        seed: int | None = None,
        count_later: bool = False,
    ) -> None:
        if count_later and (store or validate):
            raise ValueError("count_later needs store=False and validate=False")
        self.count_later = count_later
        #: Accepted bodies not counted yet (``count_later``): (content-encoding, raw body).
        self._uncounted: list[tuple[str, bytes]] = []
        self.ingestion_key = ingestion_key
        self.store = store
        self.validate = validate
        self.max_body_bytes = max_body_bytes
        #: How long a "timeout" fault holds the answer: make it longer than the client's.
        self.timeout_sleep = timeout_sleep
        #: Seconds every answer waits (slow server).
        self.delay = 0.0
        #: Probability of a random fault per request, drawn from ``fail_choices``.
        self.fail_ratio = 0.0
        self.fail_choices: tuple[Fault, ...] = (429, 500, 503, "timeout", "reset")
        self.host = host
        self._random = random.Random(seed)
        self._plan: deque[_PlannedFault] = deque()
        self._lock = threading.Lock()
        self._lines: list[dict[str, Any]] = []
        self._requests: list[ReceivedRequest] = []
        self._counters = _Counters()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> MezmoServer:
        """Listen on a free port and serve in a background thread."""
        self._httpd = _Server((self.host, 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mezmo-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> MezmoServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("MezmoServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """The plain ``http://`` ingest URL."""
        return f"http://{self.host}:{self.port}/logs/ingest"

    @property
    def url(self) -> str:
        """The sink URL (``mezmo+http://…/logs/ingest``)."""
        return "mezmo+" + self.endpoint

    # -- faults and results ----------------------------------------------------------

    def fail_next(
        self, n: int = 1, status: Fault = 503, retry_after: float | str | None = None
    ) -> None:
        """Answer the next ``n`` authenticated requests with ``status``, "timeout" or "reset"."""
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._plan.extend(_PlannedFault(status, ra) for _ in range(n))

    @property
    def lines(self) -> list[dict[str, Any]]:
        """Accepted lines, in arrival order (a copy)."""
        with self._lock:
            return list(self._lines)

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request seen, accepted or not (a copy)."""
        with self._lock:
            return list(self._requests)

    def counters(self) -> dict[str, int]:
        """requests seen, accepted requests, accepted lines and uncompressed bytes."""
        with self._lock:
            uncounted, self._uncounted = self._uncounted, []
        for encoding, raw in uncounted:
            try:
                body = self._decode(encoding, raw)
                lines = len(self._count(body))
            except _Reject as rej:
                raise RuntimeError(f"an accepted body, counted later, is bad: {rej}") from None
            with self._lock:
                self._counters.lines += lines
                self._counters.bytes += len(body)
        with self._lock:
            c = self._counters
            return {
                "requests": c.requests,
                "accepted": c.accepted,
                "lines": c.lines,
                "bytes": c.bytes,
            }

    def statuses(self) -> dict[int, int]:
        """How many answers of each HTTP status were sent (0 = reset, no answer)."""
        with self._lock:
            return dict(self._counters.by_status)

    def clear(self) -> None:
        """Forget stored lines, requests, counters and planned faults."""
        with self._lock:
            self._lines.clear()
            self._uncounted.clear()
            self._requests.clear()
            self._counters = _Counters()
            self._plan.clear()

    # -- request handling ------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        # Read the whole body first so a rejected request leaves the connection usable.
        raw = h.rfile.read(length) if length > 0 else b""
        info = ReceivedRequest(
            method=h.command,
            path=parts.path,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in h.headers.items()},
            body_bytes=len(raw),
        )
        with self._lock:
            self._requests.append(info)
            self._counters.requests += 1
        try:
            lines, nbytes = self._check(info, raw)
        except _Reject as rej:
            info.error = str(rej)
            self._answer(h, info, rej.status, {"error": str(rej), "code": "Rejected"})
            return
        except _Fault as fault:
            self._fault(h, info, fault.planned)
            return
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self.store:
                self._lines.extend(lines)
            self._counters.accepted += 1
            self._counters.lines += len(lines)
            self._counters.bytes += nbytes
        info.lines = len(lines)
        self._answer(h, info, 200, {"status": "ok", "batchID": str(uuid.uuid4())})

    def _check(self, info: ReceivedRequest, raw: bytes) -> tuple[list[dict[str, Any]], int]:
        if info.path != "/logs/ingest":
            raise _Reject(404, f"no such path {info.path}")
        if info.method != "POST":
            raise _Reject(405, f"method {info.method} not allowed")
        if not self._authorized(info.headers.get("authorization", "")):
            raise _Reject(401, "Unauthorized: invalid or missing ingestion key")
        planned = self._next_fault()
        if planned is not None:
            raise _Fault(planned)
        if not info.params.get("hostname"):
            raise _Reject(400, "missing required query parameter: hostname")
        if not info.params.get("now"):
            raise _Reject(400, "missing required query parameter: now")
        if self.count_later:
            with self._lock:
                encoding = info.headers.get("content-encoding", "identity").lower()
                self._uncounted.append((encoding, raw))
            return [], 0
        body = self._decode(info.headers.get("content-encoding", "identity").lower(), raw)
        info.decoded_bytes = len(body)
        if not self.store and not self.validate:
            return self._count(body), len(body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _Reject(400, f"body is not JSON: {exc}") from None
        lines = doc.get("lines") if isinstance(doc, dict) else None
        if not isinstance(lines, list):
            raise _Reject(400, 'body must be an object with a "lines" list')
        checked = lines if self.validate else lines[:1] + lines[-1:]
        for i, entry in enumerate(checked):
            problem = _entry_problem(entry)
            if problem:
                raise _Reject(400, f"line {i}: {problem}")
        return lines, len(body)

    def _count(self, body: bytes) -> list[Any]:
        """Benchmarks: the entries, each left as its raw JSON, with the first and last checked.

        The whole body is still parsed (msgspec checks it is JSON without building the
        entries), so counting costs the benchmark's shared CPU a fraction of a full parse.
        """
        try:
            doc = _COUNTING.decode(body)
        except msgspec.ValidationError:
            raise _Reject(400, 'body must be an object with a "lines" list') from None
        except msgspec.DecodeError as exc:
            raise _Reject(400, f"body is not JSON: {exc}") from None
        for i, raw in ((0, doc.lines[:1]), (len(doc.lines) - 1, doc.lines[-1:])):
            for entry in raw:
                problem = _entry_problem(orjson.loads(bytes(entry)))
                if problem:
                    raise _Reject(400, f"line {i}: {problem}")
        return doc.lines

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user = base64.b64decode(token, validate=True).decode().partition(":")[0]
        except ValueError:
            return False
        return user == self.ingestion_key

    def _next_fault(self) -> _PlannedFault | None:
        with self._lock:
            if self._plan:
                return self._plan.popleft()
            if self.fail_ratio and self._random.random() < self.fail_ratio:
                return _PlannedFault(self._random.choice(self.fail_choices))
        return None

    def _decode(self, encoding: str, raw: bytes) -> bytes:
        limit = self.max_body_bytes
        if encoding in ("", "identity"):
            body = raw
        elif encoding == "gzip":
            # Bounded output: a small gzip bomb must not eat the test machine's memory.
            inflater = _inflater(31)
            try:
                body = inflater.decompress(raw, limit + 1)
            except _INFLATE_ERRORS as exc:
                raise _Reject(400, f"bad gzip body: {exc}") from None
        else:
            raise _Reject(415, f"unsupported Content-Encoding {encoding}")
        if len(body) > limit:
            raise _Reject(413, f"request body over {limit} bytes")
        return body

    def _fault(self, h: _Handler, info: ReceivedRequest, planned: _PlannedFault) -> None:
        info.error = f"injected {planned.fault}"
        if planned.fault == "reset":
            self._count_status(0)
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        if planned.fault == "timeout":
            time.sleep(self.timeout_sleep)
            self._answer(h, info, 504, {"error": "injected timeout"})
            return
        status = int(planned.fault)
        headers = {"Retry-After": planned.retry_after} if planned.retry_after else {}
        self._answer(h, info, status, {"error": f"injected {status}"}, headers)

    def _count_status(self, status: int) -> None:
        with self._lock:
            by = self._counters.by_status
            by[status] = by.get(status, 0) + 1

    def _answer(
        self,
        h: _Handler,
        info: ReceivedRequest,
        status: int,
        doc: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        info.status = status
        self._count_status(status)
        payload = orjson.dumps(doc)
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(payload)
        except OSError:
            # The client gave up (its timeout) and closed the connection: nothing to do.
            h.close_connection = True


class _Fault(Exception):
    def __init__(self, planned: _PlannedFault) -> None:
        super().__init__(str(planned.fault))
        self.planned = planned


def _entry_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "must be an object"
    if type(entry.get("timestamp")) is not int:
        return '"timestamp" must be an integer (epoch ms)'
    if not isinstance(entry.get("line"), str):
        return '"line" must be a string'
    if not isinstance(entry.get("app"), str):
        return '"app" must be a string'
    if "level" in entry and not isinstance(entry["level"], str):
        return '"level" must be a string'
    if "meta" in entry and not isinstance(entry["meta"], dict):
        return '"meta" must be an object'
    return ""
