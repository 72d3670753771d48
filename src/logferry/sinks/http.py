"""Shared HTTP machinery for every HTTP sink: gzip, request planning, error classes.

A sink builds request bodies; :class:`HttpSender` compresses and posts them once and turns
every failure into a classified error: :class:`~logferry.errors.RetryableSinkError` for
transient ones (429, 5xx, timeouts, connection errors, with ``Retry-After``),
:class:`~logferry.errors.PayloadTooLargeError` for 413 (see :func:`send_split`),
:class:`~logferry.errors.FatalSinkError` for other 4xx. The engine's deliverer retries.
Messages never carry headers, query strings or credentials.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import ipaddress
import os
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from logferry.errors import ConfigError, FatalSinkError, PayloadTooLargeError, RetryableSinkError
from logferry.redact import redact, safe_url
from logferry.sinks.base import Sink

__all__ = [
    "DEFAULT_GZIP_LEVEL",
    "HttpSender",
    "is_loopback",
    "parse_retry_after",
    "require_tls",
    "safe_url",
    "send_split",
]

T = TypeVar("T")

#: Measured on 200k flow-log and JSON app lines in 2 MB bodies: level 1 compresses at
#: 185-225 MB/s with ratio 4.8-5.9, level 6 at 55-100 MB/s with ratio 5.7-7.1. CPU is the
#: scarce resource of a shipper, so the fastest level wins: it keeps ~85% of the saving.
DEFAULT_GZIP_LEVEL = 1

_isal_zlib: Any
try:
    # ISA-L (the ``fast`` extra): at levels 1-3 it writes smaller gzip than zlib's level 1,
    # about 4x faster (JSON payloads of NDJSON lines: 0.7 against 2.8 ms per MB).
    from isal import isal_zlib as _isal_zlib
except ImportError:  # optional: zlib does the same job, slower
    _isal_zlib = None
#: The gzip levels ISA-L takes over from zlib (higher ones ask for zlib's ratio).
_ISAL_LEVELS = range(1, 4)


def gzip_compress(body: bytes, level: int) -> bytes:
    """``body`` as one gzip member at ``level`` (1-9); both libraries release the GIL."""
    if _isal_zlib is not None and level in _ISAL_LEVELS:
        packed: bytes = _isal_zlib.compress(body, level, wbits=31)
        return packed
    return zlib.compress(body, level, wbits=31)


_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_SNIPPET_CHARS = 200


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: traffic that never leaves the host."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def require_tls(endpoint: str, *, secret: str, https_form: str, allow: bool) -> None:
    """Refuse plain ``http://`` to a host other than loopback when ``secret`` would travel.

    ``allow`` is the ``allow_insecure_http`` option (``--allow-insecure-http``).
    """
    parts = urlsplit(endpoint)
    if parts.scheme.lower() != "http" or allow or is_loopback(parts.hostname):
        return
    raise ConfigError(
        f"{safe_url(endpoint)} sends {secret} in cleartext; use {https_form} "
        "or pass --allow-insecure-http (sink option allow_insecure_http: true)"
    )


def _snippet(text: str) -> str:
    # One line, short: enough to see the server's reason, never a whole HTML error page.
    flat = " ".join(text.split())
    return flat if len(flat) <= _SNIPPET_CHARS else flat[:_SNIPPET_CHARS] + "…"


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _DeferredTLS:
    """httpx's default TLS context (CA bundle and all), built at the first TLS handshake.

    Reading the CA bundle takes ~14 ms, a fixed cost of every start-up; a sink that posts
    over plain ``http://`` (a local relay, a test server) never needs it. httpcore only calls
    on the context (``set_alpn_protocols``, ``wrap_socket``) when it opens a TLS connection,
    so each attribute is looked up on a context made with ``httpx.create_ssl_context`` then:
    the same context, the same checks, only later.
    """

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        context = self._context
        if context is None:
            with self._lock:
                if self._context is None:
                    try:
                        self._context = httpx.create_ssl_context(verify=True)
                    except (OSError, ValueError) as exc:  # a CA file that is not PEM
                        # A transport error, classified like any failure to connect.
                        raise httpx.ConnectError(f"cannot load CA certificates: {exc}") from exc
                context = self._context
        return getattr(context, name)


def _passes_context_on() -> bool:
    """Whether this httpx hands a ``verify`` that is not a bool or str to httpcore as it is
    (0.28 on); 0.27 takes such a value for a CA bundle path and fails on the deferred one."""
    try:
        major, minor = (int(part) for part in httpx.__version__.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (0, 28)


def _tls_context(verify: bool | str) -> Any:
    """What to pass httpx as ``verify``: a deferred default context when it can be one."""
    if verify is not True or not _passes_context_on():
        return verify
    # httpx reads SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle. A path that is
    # not there is left to httpx now, so that it fails when the sink opens, as it always has.
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if (cafile and not os.path.isfile(cafile)) or (
        not cafile and capath and not os.path.isdir(capath)
    ):
        return verify
    return _DeferredTLS()


class HttpSender:
    """One keep-alive ``httpx.Client`` shared by every worker thread of a sink.

    ``post`` gzips the body, makes one attempt and raises a classified ``SinkError``:
    ``RetryableSinkError`` (with the server's ``Retry-After``) for what may pass later,
    ``PayloadTooLargeError`` for a 413, ``FatalSinkError`` for the rest. Retrying is the
    engine's job (:mod:`logferry.engine.delivery`), in one place for every sink.
    """

    def __init__(
        self,
        *,
        name: str = "http",
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        verify: bool | str = True,
        gzip_level: int | None = None,
        secrets: Iterable[str] = (),
        hints: Mapping[int, str] | None = None,
        max_connections: int = 32,
        client: httpx.Client | None = None,
    ) -> None:
        gzip_level = DEFAULT_GZIP_LEVEL if gzip_level is None else gzip_level
        if not 0 <= gzip_level <= 9:
            raise ValueError(f"gzip_level must be 0..9 (0 = no compression), got {gzip_level}")
        self.name = name
        self.gzip_level = gzip_level
        # Servers sometimes echo what they were sent; scrub secrets from any text we raise.
        self._secrets = tuple(s for s in secrets if s)
        self._hints = dict(hints or {})
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            verify=_tls_context(verify),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
        )
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "failed": 0}

    def __repr__(self) -> str:
        return f"HttpSender(name={self.name!r})"

    def counters(self) -> dict[str, int]:
        """HTTP requests sent, and requests that failed."""
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        """Close the connection pool (only when this sender created the client)."""
        if self._owns_client:
            self._client.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)  # URLs a server or httpx echoes back

    def compress(self, body: bytes) -> bytes:
        """Gzip ``body`` at the sender's level (see :func:`gzip_compress`)."""
        return gzip_compress(body, self.gzip_level)

    def post(
        self,
        url: str,
        body: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
        content_type: str = "application/json",
        compressed: bool = False,
    ) -> httpx.Response:
        """POST ``body`` gzipped once; return the 2xx response or raise a classified ``SinkError``.

        ``params`` may be a callable, evaluated per request, for values that must be fresh
        (Mezmo's ``now``). ``compressed`` says ``body`` already went through
        :meth:`compress` (sinks gzip ahead, in the decode stage, to overlap it with sending).
        """
        hdrs = {"Content-Type": content_type, **(headers or {})}
        if compressed:
            content = body
            hdrs["Content-Encoding"] = "gzip"
        elif self.gzip_level:
            content = self.compress(body)
            hdrs["Content-Encoding"] = "gzip"
        else:
            content = body
        target = safe_url(url)
        # Sink names already carry their endpoint: say it once.
        where = f"{self.name}: POST" if target in self.name else f"{self.name}: POST {target}"
        query = params() if callable(params) else params
        self._count("requests")
        try:
            response = self._client.post(url, content=content, headers=hdrs, params=query)
        except (httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
            self._count("failed")
            raise FatalSinkError(self._scrub(f"{where}: {exc}")) from None
        except httpx.TransportError as exc:
            self._count("failed")
            if _tls_failure(exc):
                raise FatalSinkError(
                    self._scrub(
                        f"{where}: TLS certificate verification failed ({exc}); "
                        "fix the CA bundle or, for a local endpoint only, disable verify"
                    )
                ) from None
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise RetryableSinkError(self._scrub(f"{where}: {problem}")) from None
        status = response.status_code
        if 200 <= status < 300:
            return response
        self._count("failed")
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        snippet = _snippet(response.text)
        if status == 413:
            raise PayloadTooLargeError(
                self._scrub(f"{where}: {reason} for {len(body)} bytes: {snippet}")
            )
        if status not in _RETRYABLE_STATUS and not 500 <= status < 600:
            hint = self._hints.get(status)
            msg = f"{where}: {reason}: {snippet or '(empty body)'}"
            raise FatalSinkError(self._scrub(f"{msg} — {hint}" if hint else msg))
        problem = f"{reason}: {snippet}" if snippet else reason
        raise RetryableSinkError(
            self._scrub(f"{where}: {problem}"),
            parse_retry_after(response.headers.get("Retry-After")),
        )


def send_split(
    items: Sequence[T],
    encode: Callable[[Sequence[T]], bytes],
    send: Callable[[bytes], Any],
    *,
    max_bytes: int | None = None,
) -> int:
    """Encode and send ``items`` in order, halving a part the sink refuses as too large.

    A part is halved when its body exceeds ``max_bytes`` or ``send`` raises
    ``PayloadTooLargeError``; one item that is still refused raises ``FatalSinkError``.
    Returns the number of requests sent.
    """
    # An explicit stack, newest-first, keeps the order of items across the halves.
    stack: list[Sequence[T]] = [items]
    sent = 0
    while stack:
        part = stack.pop()
        if not part:
            continue
        body = encode(part)
        if max_bytes is not None and len(body) > max_bytes and len(part) > 1:
            mid = len(part) // 2
            stack.extend((part[mid:], part[:mid]))
            continue
        try:
            send(body)
        except PayloadTooLargeError as exc:
            if len(part) == 1:
                raise FatalSinkError(
                    f"one record is too large for the sink even alone ({len(body)} bytes "
                    f"encoded): {exc}"
                ) from None
            mid = len(part) // 2
            stack.extend((part[mid:], part[:mid]))
            continue
        sent += 1
    return sent


class HttpSink(Sink):
    """Base of the sinks that POST through one :class:`HttpSender` (Mezmo, InfluxDB).

    Subclasses set ``_http``, ``_lock`` and ``_counts`` (requests, lines or points, splits…)
    in their constructor; counters and closing live here, once.
    """

    _http: HttpSender
    _lock: threading.Lock
    _counts: dict[str, int]

    def _plan(
        self,
        items: Sequence[T],
        encode: Callable[[Sequence[T]], bytes],
        *,
        max_items: int,
        max_bytes: int,
    ) -> list[tuple[int, int, bytes]]:
        """Gzipped request bodies as (first, end, body), each within the item and byte caps.

        Sizes are measured, not estimated: a part that encodes too large is cut in
        proportion and encoded again (rare with the default batch and request sizes).
        """
        bodies = []
        lo, n = 0, len(items)
        while lo < n:
            hi = min(n, lo + max_items)
            body = encode(items[lo:hi])
            while len(body) > max_bytes and hi - lo > 1:
                hi = lo + max(1, int((hi - lo) * max_bytes / len(body) * 0.95))
                body = encode(items[lo:hi])
            bodies.append((lo, hi, self._http.compress(body)))
            lo = hi
        return bodies

    def _send_planned(
        self,
        bodies: list[tuple[int, int, bytes]],
        items: Callable[[], Sequence[T]],
        encode: Callable[[Sequence[T]], bytes],
        send: Callable[..., Any],
        *,
        concurrency: int = 1,
    ) -> tuple[int, int]:
        """POST planned bodies; on a 413 re-encode that range and halve it until it passes.

        ``items`` gives the encoded items back (only needed after a 413). With
        ``concurrency`` above 1, that many requests are in flight at once (for sinks where
        the order of requests within a batch does not matter); the call still returns only
        once every request got its answer, and raises the first failure. Bodies that were
        acknowledged are removed from ``bodies``, so a retry of the batch (with the same
        prepared bodies) sends only the rest. Returns (requests, extra requests caused by
        splits).
        """

        def one(lo: int, hi: int, gzipped: bytes) -> tuple[int, int]:
            try:
                send(gzipped, compressed=True)
                return 1, 0
            except PayloadTooLargeError:
                # The server's limit is lower than ours: halve until it takes the parts.
                sent = send_split(items()[lo:hi], encode, send)
                return sent, sent - 1

        results: list[tuple[int, int]] = []
        if concurrency <= 1 or len(bodies) <= 1:
            while bodies:
                results.append(one(*bodies[0]))
                del bodies[0]  # acknowledged: a retry of this batch must not send it again
        else:
            futures = [self._pool(concurrency).submit(one, *body) for body in bodies]
            failure, left = None, []
            for body, future in zip(list(bodies), futures, strict=True):
                try:
                    results.append(future.result())
                except Exception as exc:
                    failure = failure or exc
                    left.append(body)
            bodies[:] = left
            if failure is not None:
                raise failure
        return sum(r for r, _ in results), sum(s for _, s in results)

    def _pool(self, workers: int) -> concurrent.futures.ThreadPoolExecutor:
        """Threads for concurrent requests, made on first use."""
        with self._lock:
            pool: concurrent.futures.ThreadPoolExecutor | None = getattr(self, "_executor", None)
            if pool is None:
                pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="http")
                self._executor = pool
            return pool

    def counters(self) -> dict[str, int]:
        """The sink's counts."""
        with self._lock:
            return dict(self._counts)

    def close(self) -> None:
        """Release the HTTP connection pool (and the request threads, if any)."""
        pool = getattr(self, "_executor", None)
        if pool is not None:
            pool.shutdown(wait=True)
        self._http.close()
