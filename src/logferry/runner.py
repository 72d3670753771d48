"""The runner: picks objects by mode, claims them, pipes batches to every sink, checkpoints.

Per object, decoding runs in a producer thread a couple of batches ahead of the
sinks, so reading, decompressing and parsing overlap with compressing and
sending (zlib and sockets release the GIL). Several objects are shipped at once
by ``workers`` threads, which matters for buckets of many small objects.

The ledger advances only after every sink acknowledged a batch (invariant 1).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from logferry.codecs import decode_object
from logferry.codecs.formats.base import DecodeContext, FormatOptions
from logferry.config import ShipOptions
from logferry.errors import DecodeError, LogferryError, ObjectError, is_transient
from logferry.ledger.base import Claim, ClaimLostError, Ledger, Status, new_owner_id
from logferry.records import Batch, Chunk, ObjectInfo, concat_chunks
from logferry.sinks.base import Sink
from logferry.sources.base import BucketSource

log = logging.getLogger("logferry")


class Progress:
    """Receives progress events; the default ignores them. Called from worker threads."""

    def start_pass(self, objects: int, nbytes: int) -> None:
        """A pass over ``objects`` objects of ``nbytes`` stored bytes begins."""

    def object_started(self, obj: ObjectInfo) -> None:
        """A worker begins ``obj``."""

    def advanced(self, lines: int, raw_bytes: int) -> None:
        """``lines`` were acknowledged; ``raw_bytes`` stored bytes were read."""

    def object_finished(self, obj: ObjectInfo, error: str | None) -> None:
        """``obj`` is done (``error`` None) or failed."""

    def message(self, text: str) -> None:
        """A notice for the user (skips, re-sends)."""

    def close(self) -> None:
        """The run is over."""


@dataclass
class Failure:
    """An object that could not be shipped, with a one-line reason."""

    key: str
    error: str


@dataclass
class ShipResult:
    """Summary of a run; ``to_dict`` is the ``--json`` output."""

    source: str
    objects: int = 0
    lines: int = 0
    bytes: int = 0
    skipped: int = 0
    held: int = 0
    failed: list[Failure] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    seconds: float = 0.0
    reports: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing failed, nothing waits in the error queue, and no interruption."""
        return not self.failed and not self.interrupted and not self.held

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary."""
        return {
            "source": self.source,
            "objects": self.objects,
            "lines": self.lines,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "held": self.held,
            "failed": [{"key": f.key, "error": f.error} for f in self.failed],
            "counters": dict(sorted(self.counters.items())),
            **({"handlers": self.reports} if self.reports else {}),
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 3),
        }


def shard_of(key: str, shards: int) -> int:
    """A key's shard: stable across processes and hosts (unlike ``hash()``)."""
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) % shards


def one_line(exc: BaseException) -> str:
    """A one-line reason for an exception, naming its type when it is not one of ours."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, LogferryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _Stop(Exception):
    """Raised inside a worker when shutdown was requested."""


_DONE = object()


def prefetch(items: Iterator[Any], depth: int, cancel: threading.Event) -> Iterator[Any]:
    """Run ``items`` in a thread, ``depth`` items ahead of the consumer; errors propagate."""
    q: queue.Queue[Any] = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)
        finally:
            close = getattr(items, "close", None)
            if close:
                close()

    thread = threading.Thread(target=produce, name="logferry-decode", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                if cancel.is_set():
                    raise _Stop() from None
                continue
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


def batches(
    chunks: Iterable[Chunk],
    *,
    source: str,
    key: str,
    skip: int,
    max_lines: int,
    max_bytes: int,
    max_wait: float,
) -> Iterator[Batch]:
    """Regroup decoded chunks into batches, dropping the first ``skip`` (acknowledged) records."""
    seen = 0
    start = skip
    pieces: list[Chunk] = []
    count = nbytes = 0
    began = time.monotonic()

    def flush() -> Batch:
        nonlocal pieces, count, nbytes, start, began
        merged = concat_chunks(pieces)
        b = Batch(source, key, start, start + count, merged.lines, merged.timestamps,
                  merged.fields, nbytes)  # type: ignore[arg-type]  # fmt: skip
        b.columns = merged.columns
        start += count
        pieces, count, nbytes = [], 0, 0
        began = time.monotonic()
        return b

    for chunk in chunks:
        n = len(chunk)
        if seen + n <= skip:
            seen += n
            continue
        if seen < skip:
            chunk = chunk.slice(skip - seen)
            seen = skip
        seen += len(chunk)
        i = 0
        while i < len(chunk):
            room = max_lines - count
            piece = chunk if i == 0 and room >= len(chunk) else chunk.slice(i, i + room)
            size = sum(map(len, piece.lines))
            # A piece of huge lines is cut until it fits the byte budget (one line at least).
            while nbytes + size > max_bytes and len(piece) > 1:
                piece = piece.slice(0, max(1, len(piece) // 2))
                size = sum(map(len, piece.lines))
            pieces.append(piece)
            count += len(piece)
            nbytes += size
            i += len(piece)
            if count >= max_lines or nbytes >= max_bytes:
                yield flush()
        if count and time.monotonic() - began >= max_wait:
            yield flush()
    if count:
        yield flush()


@dataclass(frozen=True)
class Route:
    """Where objects under ``prefix`` go: a format chain and sinks (none: dropped)."""

    prefix: str
    sinks: tuple[Sink, ...]
    formats: tuple[str, ...] = ("auto",)
    format_options: FormatOptions | None = None

    @property
    def drop(self) -> bool:
        """Objects on this route are marked done without being shipped."""
        return not self.sinks


class Router:
    """Picks the route of a key: the longest matching prefix, as SLIPS' bucket_mapping."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def route(self, key: str) -> Route | None:
        """The route for ``key``, or None when no prefix matches."""
        return next((r for r in self.routes if key.startswith(r.prefix)), None)

    def sinks(self) -> list[Sink]:
        """Every sink of every route, once each."""
        seen: dict[int, Sink] = {}
        for route in self.routes:
            for sink in route.sinks:
                seen.setdefault(id(sink), sink)
        return list(seen.values())


class Runner:
    """Ships objects of one source to sinks according to ``options.mode``.

    Without a ``router`` every object goes to every sink in ``sinks`` with ``options.format``.
    """

    def __init__(
        self,
        source: BucketSource,
        sinks: list[Sink],
        ledger: Ledger,
        options: ShipOptions | None = None,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        router: Router | None = None,
    ) -> None:
        self.options = options or ShipOptions()
        if router is None:
            if not sinks:
                raise ValueError("at least one sink is needed")
            router = Router([Route("", tuple(sinks), (self.options.format,))])
        self.router = router
        self.source = source
        self.sinks = router.sinks()
        self.ledger = ledger
        self.progress = progress or Progress()
        self.stop = stop or threading.Event()
        self.owner = new_owner_id()
        self.result = ShipResult(source.display)
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, str], Claim] = {}
        self._counters: collections.Counter[str] = collections.Counter()
        self._hb_stop = threading.Event()
        self._failures: dict[str, Failure] = {}
        self._transient: set[tuple[str, str]] = set()
        self.format_options = self.format_options_of(self.options)

    @staticmethod
    def format_options_of(options: ShipOptions) -> FormatOptions:
        """The decoding options a run's options imply."""
        return FormatOptions(
            expand=options.expand,
            timestamp_fields=options.timestamp_fields,
            max_document_bytes=options.max_document_bytes,
            syslog_timezone=options.syslog_timezone,
        )

    # -- selecting objects -------------------------------------------------

    def pending(self, *, include_done: bool = False) -> list[ObjectInfo]:
        """Objects to ship, oldest first (LastModified, then key).

        Not done, and not failed ``max_attempts`` times (those wait in the error queue for
        ``drain``); everything with ``include_done``.
        """
        todo: list[ObjectInfo] = []
        limit = self.options.max_attempts
        shard, shards = self.options.shard_index, self.options.shard_count
        for page in self.source.list_pages():
            if shards > 1:
                page = [o for o in page if shard_of(o.key, shards) == shard]
            if include_done:
                todo.extend(page)
                continue
            known = self.ledger.lookup(self.source.id, (o.key for o in page))
            for obj in page:
                seen = known.get(obj.key)
                if seen is None or seen.etag != obj.etag:
                    todo.append(obj)
                elif seen.status == Status.FAILED:
                    if seen.attempts < limit:
                        todo.append(obj)
                    else:
                        self.result.held += 1
                elif seen.status != Status.DONE:
                    todo.append(obj)
        todo.sort(key=lambda o: (o.last_modified_ms, o.key))
        return todo

    # -- running ------------------------------------------------------------

    def run(self) -> ShipResult:
        """Run the selected mode to the end (or until ``stop`` is set)."""
        began = time.monotonic()
        heartbeat = threading.Thread(target=self._heartbeat, name="logferry-lease", daemon=True)
        heartbeat.start()
        try:
            mode = self.options.mode
            if mode == "key":
                self._ship_keys(self.options.keys)
            elif mode == "latest":
                assert self.options.latest is not None
                self._ship_pass(self.pending()[-self.options.latest :])
            elif mode == "all":
                self.progress.message("--all: re-sending every object, whatever the ledger says")
                self._ship_pass(self.pending(include_done=True), force=True)
            else:
                self._catchup()
        finally:
            self.result.interrupted = self.stop.is_set()
            self.result.seconds = time.monotonic() - began
            counters = collections.Counter(self._counters)
            for sink in self.sinks:
                counters.update(sink.counters())
            self.result.counters = {k: v for k, v in counters.items() if v}
            for sink in self.sinks:
                self.result.reports.update(sink.report())
            self._hb_stop.set()
            self.progress.close()
        return self.result

    def _catchup(self) -> None:
        # List again after each pass: objects keep arriving during long catch-ups. An object
        # that failed for a transient reason is tried again in a later pass, after a growing
        # delay, until it has had max_attempts; other failures wait for the next run or drain.
        settled: set[tuple[str, str]] = set()
        delay = self.options.retry_delay
        while not self.stop.is_set():
            self.result.held = 0
            todo = [o for o in self.pending() if (o.key, o.etag) not in settled]
            if not todo:
                return
            if any((o.key, o.etag) in self._transient for o in todo):
                if self.stop.wait(delay):
                    return
                delay = min(delay * 2, 60.0)
            self._transient.clear()
            self._ship_pass(todo)
            settled.update((o.key, o.etag) for o in todo if (o.key, o.etag) not in self._transient)

    def _ship_keys(self, keys: tuple[str, ...]) -> None:
        todo: list[ObjectInfo] = []
        for key in keys:
            try:
                obj = self.source.head(key)
            except ObjectError as exc:
                self._failed(ObjectInfo(key, 0, "", 0), one_line(exc))
                continue
            entry = self.ledger.get(self.source.id, obj.key, obj.etag)
            if entry is not None and entry.status == Status.DONE and not self.options.force:
                self.progress.message(f"{key}: already shipped (ledger says done); skipped")
                self.result.skipped += 1
                continue
            todo.append(obj)
        self._ship_pass(todo, force=self.options.force)

    def _ship_pass(self, objects: list[ObjectInfo], force: bool = False) -> None:
        self.progress.start_pass(len(objects), sum(o.size for o in objects))
        items = iter(objects)
        lock = threading.Lock()

        def work() -> None:
            while not self.stop.is_set():
                with lock:
                    obj = next(items, None)
                if obj is None:
                    return
                try:
                    self._ship_object(obj, force)
                except Exception as exc:
                    # The ledger itself failed (locked, unreachable): this object is not
                    # shipped, and it must say so rather than vanish with a dead thread.
                    log.error("%s: %s", obj.key, one_line(exc))
                    self._failed(obj, f"ledger: {one_line(exc)}")

        n = min(self.options.workers, len(objects))
        if n <= 1:
            work()
            return
        threads = [threading.Thread(target=work, name=f"logferry-worker-{i}") for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _heartbeat(self) -> None:
        # Long sink retries must not let a live claim expire and be taken over.
        interval = self.options.lease_seconds / 3
        while not self._hb_stop.wait(interval):
            with self._lock:
                claims = list(self._claims.values())
            if claims:
                try:
                    self.ledger.renew(claims, self.options.lease_seconds)
                except Exception as exc:  # a missed heartbeat is retried next time
                    log.warning("lease renewal failed: %s", one_line(exc))

    def _failed(self, obj: ObjectInfo, error: str) -> None:
        with self._lock:
            self._failures[obj.key] = Failure(obj.key, error)
            self.result.failed = list(self._failures.values())
        self.progress.object_finished(obj, error)

    def _ship_object(self, obj: ObjectInfo, force: bool) -> None:
        opts = self.options
        route = self.router.route(obj.key)
        claim = self.ledger.claim(self.source.id, obj, self.owner, opts.lease_seconds, force=force)
        if claim is None:
            with self._lock:
                self.result.skipped += 1
            return
        with self._lock:
            self._claims[(obj.key, obj.etag)] = claim
        self.progress.object_started(obj)
        opened: list[Sink] = []
        counters: collections.Counter[str] = collections.Counter()
        shipped = [0, 0]  # lines, bytes acknowledged by every sink in this attempt
        try:
            if route is None:
                prefixes = ", ".join(repr(r.prefix) for r in self.router.routes)
                raise ObjectError(f"no route matches this key (route prefixes: {prefixes})")
            if route.drop:
                counters["dropped"] += 1
            for i, fmt in enumerate(route.formats):
                try:
                    self._ship_format(obj, claim, route, fmt, opened, counters, shipped)
                    break
                except DecodeError:
                    # A format chain tries the next format, as long as nothing was shipped.
                    if i + 1 == len(route.formats) or shipped[0] or claim.position:
                        raise
                    for sink in opened:
                        sink.abort(self.source.id, obj)
                    opened.clear()
            for sink in opened:
                sink.commit(self.source.id, obj)
            self.ledger.complete(claim)
        except Exception as exc:
            if not (isinstance(exc, _Stop) or self.stop.is_set()):
                self._object_failed(obj, claim, opened, exc)
                return
            # Shutdown: a retry wait cut short is not the object's fault; resume it next run.
            for sink in opened:
                sink.abort(self.source.id, obj)
            with contextlib.suppress(ClaimLostError):
                self.ledger.release(claim)
        else:
            with self._lock:
                self.result.objects += 1
                if self._failures.pop(obj.key, None):  # a retry in this run succeeded
                    self.result.failed = list(self._failures.values())
            self.progress.object_finished(obj, None)
        finally:
            with self._lock:
                self._claims.pop((obj.key, obj.etag), None)
                self.result.lines += shipped[0]
                self.result.bytes += shipped[1]
                self._counters.update(counters)

    def _ship_format(
        self,
        obj: ObjectInfo,
        claim: Claim,
        route: Route,
        fmt: str,
        opened: list[Sink],
        counters: collections.Counter[str],
        shipped: list[int],
    ) -> None:
        """Decode ``obj`` with ``fmt`` and ship it to the route's sinks, checkpointing."""
        opts = self.options
        if route.drop:
            return
        for sink in route.sinks:
            sink.open(self.source.id, obj, claim.position)
            opened.append(sink)
        ctx = DecodeContext(
            obj.key, obj.last_modified_ms, route.format_options or self.format_options, counters
        )
        raw = self._counted(self.source.open(obj, opts.read_chunk))
        stream = batches(
            decode_object(raw, ctx, fmt),
            source=self.source.id,
            key=obj.key,
            skip=claim.position,
            max_lines=opts.batch_lines,
            max_bytes=opts.batch_bytes,
            max_wait=opts.batch_wait,
        )
        # Three stages in three threads: decode → prepare (sinks encode and gzip) → send.
        # zlib and sockets release the GIL, so the stages overlap on two cores.
        decoded = prefetch(stream, 1, self.stop)
        for batch in prefetch(self._prepared(decoded, route.sinks, ctx), 1, self.stop):
            for sink in route.sinks:
                sink.write(batch)
            # Every sink acknowledged: only now may the ledger move (invariant 1).
            self.ledger.checkpoint(claim, batch.end, batch.nbytes, opts.lease_seconds)
            shipped[0] += len(batch)
            shipped[1] += batch.nbytes
            self.progress.advanced(len(batch), 0)
            if self.stop.is_set():
                raise _Stop()

    @staticmethod
    def _prepared(
        batches: Iterator[Batch], sinks: tuple[Sink, ...], ctx: DecodeContext
    ) -> Iterator[Batch]:
        for batch in batches:
            batch.format = ctx.format_name or ""
            for sink in sinks:
                sink.prepare(batch)
            yield batch

    def _object_failed(
        self, obj: ObjectInfo, claim: Claim, opened: list[Sink], exc: Exception
    ) -> None:
        for sink in opened:
            sink.abort(self.source.id, obj)
        if isinstance(exc, ClaimLostError):
            self.progress.message(str(exc))
            return
        error = one_line(exc)
        if not isinstance(exc, LogferryError):
            log.debug("unexpected error shipping %s", obj.key, exc_info=True)
        with contextlib.suppress(ClaimLostError):  # someone else owns it now
            self.ledger.fail(claim, error, type(exc).__name__)
        if is_transient(exc) and claim.attempts < self.options.max_attempts:
            with self._lock:
                self._transient.add((obj.key, obj.etag))
        self._failed(obj, error)

    def _counted(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        try:
            for chunk in chunks:
                self.progress.advanced(0, len(chunk))
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
