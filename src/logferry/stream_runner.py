"""The stream runner: follows growing partitions (log streams, files) into the sinks.

Where :mod:`logferry.runner` ships finite objects, this one reads partitions that keep
growing. It claims each partition in the ledger (so two runners never read the same one),
reads what is new, batches it by lines, bytes and wait time, hands each batch to every sink
of the partition's route, and only then checkpoints the batch's end position and the
partition's cursor (invariant 1).

Reading, decoding and the sinks' ``prepare`` (encoding) run in the calling thread; delivering
(sinks write, then the ledger checkpoint) runs in a flusher thread a batch or two behind, so
parsing and encoding overlap with database and network work. Batches are delivered in order,
one at a time.

A sink that keeps failing with a transient error holds the batch and is retried with a
growing delay (and holds the batches behind it): nothing is dropped. A batch a sink refuses for good (a 400, a handler
exception) becomes an entry in the error queue naming the partition and its record range,
and the stream goes on (invariant 3).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from logferry.config import ShipOptions
from logferry.errors import is_transient
from logferry.ledger.base import Claim, ClaimLostError, Ledger, new_owner_id
from logferry.records import MALFORMED_KEY, Batch, Chunk, Columns, ObjectInfo, concat_columns
from logferry.runner import Failure, Progress, Route, Router, ShipResult, one_line
from logferry.sinks.base import Sink
from logferry.sources.stream import PartitionInfo, StreamPartition, StreamSource

log = logging.getLogger("logferry")

#: A file of garbage must not turn into a million ledger rows per batch.
MAX_MALFORMED_ENTRIES_PER_BATCH = 100


@dataclass
class _Held:
    """A claimed, open partition and the records read but not yet acknowledged."""

    info: PartitionInfo
    claim: Claim
    partition: StreamPartition
    route: Route
    position: int
    lines: list[str] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    fields: list[Any] = field(default_factory=list)
    has_fields: bool = False
    col_parts: list[tuple[Columns | None, int]] = field(default_factory=list)
    nbytes: int = 0
    cursor: str | None = None
    since: float = 0.0
    caught_up: bool = False
    finished: bool = False
    read_after: float = 0.0
    read_delay: float = 0.5
    read_failures: int = 0
    #: Batches handed to the flusher and not yet checkpointed.
    inflight: int = 0
    #: A batch of this partition could not be delivered (shutdown) or the claim was lost:
    #: nothing after it may be checkpointed, and the partition is let go.
    abandoned: bool = False

    def add(self, chunk: Chunk, cursor: str | None) -> None:
        if not self.lines:
            self.since = time.monotonic()
        self.lines.extend(chunk.lines)
        self.timestamps.extend(chunk.timestamps)
        if chunk.fields is not None:
            if not self.has_fields:
                self.fields = [None] * (len(self.lines) - len(chunk))
                self.has_fields = True
            self.fields.extend(chunk.fields)
        elif self.has_fields:
            self.fields.extend([None] * len(chunk))
        self.col_parts.append((chunk.columns, len(chunk)))
        self.nbytes += sum(map(len, chunk.lines))
        if cursor is not None:
            self.cursor = cursor

    def take(self, source: str) -> Batch:
        batch = Batch(
            source,
            self.info.key,
            self.position,
            self.position + len(self.lines),
            self.lines,
            self.timestamps,
            self.fields if self.has_fields else None,
            self.nbytes,
        )
        batch.columns = concat_columns(self.col_parts)
        self.col_parts = []
        self.lines, self.timestamps, self.fields, self.has_fields, self.nbytes = (
            [],
            [],
            [],
            False,
            0,
        )
        return batch


@dataclass
class _Job:
    """One batch for the flusher, with the cursor just after its last record."""

    held: _Held
    batch: Batch
    cursor: str | None


class StreamRunner:
    """Reads every partition of a stream source into the sinks of its route."""

    def __init__(
        self,
        source: StreamSource,
        sinks: list[Sink],
        ledger: Ledger,
        options: ShipOptions | None = None,
        *,
        follow: bool = True,
        router: Router | None = None,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        discover_interval: float = 5.0,
        poll_interval: float = 0.25,
    ) -> None:
        self.options = options or ShipOptions()
        if router is None:
            if not sinks:
                raise ValueError("at least one sink is needed")
            router = Router([Route("", tuple(sinks))])
        self.router = router
        self.source = source
        self.ledger = ledger
        self.follow = follow
        self.progress = progress or Progress()
        self.stop = stop or threading.Event()
        self.discover_interval = discover_interval
        self.poll_interval = poll_interval
        self.owner = new_owner_id()
        self.result = ShipResult(source.display)
        self._held: dict[str, _Held] = {}
        self._failed_parts: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._hb_stop = threading.Event()
        # Two batches may wait for the flusher: enough to overlap, bounded in memory.
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=2)
        self._extra: collections.Counter[str] = collections.Counter()
        self._closing = False

    # -- the loop ------------------------------------------------------------------

    def run(self) -> ShipResult:
        """Follow (or, without ``follow``, read to the current end of) every partition."""
        began = time.monotonic()
        heartbeat = threading.Thread(target=self._heartbeat, name="logferry-lease", daemon=True)
        heartbeat.start()
        flusher = threading.Thread(target=self._flusher, name="logferry-flush", daemon=True)
        flusher.start()
        last_discover = -1e9
        try:
            while not self.stop.is_set():
                if time.monotonic() - last_discover >= self.discover_interval:
                    self._discover()
                    last_discover = time.monotonic()
                busy, caught_up = self._round()
                if not self.follow and caught_up and not self._pending():
                    break
                if not busy:
                    self.source.wait(self._idle_wait())
        except BaseException:
            self._closing = True  # the flusher must not retry forever behind a crash
            raise
        finally:
            self._hb_stop.set()
            self._shutdown(flusher)
            self.result.seconds = time.monotonic() - began
            self.result.interrupted = self.stop.is_set() and self.follow is False
            self.progress.close()
        return self.result

    def _idle_wait(self) -> float:
        # Wake in time to flush a batch whose wait is over, or to retry a sink.
        now = time.monotonic()
        wait = self.poll_interval
        for h in self._held.values():
            if h.lines:
                wait = min(wait, max(0.0, h.since + self.options.batch_wait - now))
        return max(wait, 0.005)

    def _pending(self) -> bool:
        """Records read but not yet checkpointed, here or with the flusher."""
        return any(h.lines or h.inflight for h in self._held.values())

    def _discover(self) -> None:
        try:
            parts = self.source.partitions()
        except Exception as exc:
            log.warning("listing %s failed: %s", self.source.display, one_line(exc))
            return
        for info in parts:
            if info.key in self._held or (info.key, info.version) in self._failed_parts:
                continue
            self._take(info)

    def _take(self, info: PartitionInfo) -> None:
        route = self.router.route(info.key)
        obj = ObjectInfo(info.key, info.size, info.version, info.last_modified_ms)
        claim = self.ledger.claim(self.source.id, obj, self.owner, self.options.lease_seconds)
        if claim is None:
            return  # another live runner follows it (or it is done: a finished file)
        if route is None:
            error = "no route matches this partition"
            self.ledger.fail(claim, error, "ObjectError")
            self._failed(info.key, info.version, error)
            return
        cursor, position = claim.cursor, claim.position
        if cursor is None and position == 0 and self.source.versions_identify_content:
            # Same content under a new name (a file renamed while nobody ran): carry on.
            moved = self.ledger.latest_cursor(self.source.id, info.version)
            if moved is not None:
                position, cursor = moved
        try:
            partition = self.source.open(info, cursor, position)
        except Exception as exc:
            self.ledger.fail(claim, one_line(exc), type(exc).__name__)
            self._failed(info.key, info.version, one_line(exc))
            return
        opened: list[Sink] = []
        try:
            for sink in route.sinks:
                sink.open(self.source.id, obj, position, stream=True)
                opened.append(sink)
        except Exception as exc:
            for sink in opened:
                sink.abort(self.source.id, obj)
            partition.close()
            self.ledger.fail(claim, one_line(exc), type(exc).__name__)
            self._failed(info.key, info.version, one_line(exc))
            return
        self._held[info.key] = _Held(info, claim, partition, route, position)
        self.progress.object_started(obj)

    def _round(self) -> tuple[bool, bool]:
        """One pass over the held partitions: read, flush what is due. (busy, all caught up)."""
        busy = False
        caught_up = True
        opts = self.options
        for key, h in list(self._held.items()):
            if self.stop.is_set():
                break
            if h.abandoned:
                self._let_go(h)
                continue
            readable = not h.finished and time.monotonic() >= h.read_after
            if not h.finished and not readable:
                caught_up = False  # backing off after a transient read error
            if readable and len(h.lines) < opts.batch_lines and h.nbytes < opts.batch_bytes:
                try:
                    res = h.partition.read(opts.batch_lines - len(h.lines))
                except Exception as exc:
                    h.read_failures += 1
                    if is_transient(exc) and h.read_failures < opts.max_attempts:
                        # Throttled or cut off: keep the partition and what it read; retry.
                        caught_up = False
                        h.read_delay = min(h.read_delay * 2, 60.0)
                        h.read_after = time.monotonic() + h.read_delay
                        log.warning("%s: %s; reading again in %.0f s", key, one_line(exc),
                                    h.read_delay)  # fmt: skip
                        continue
                    self._drop_partition(h, exc)
                    continue
                h.read_delay, h.read_failures = 0.5, 0
                if len(res.chunk):
                    h.add(res.chunk, res.cursor)
                    busy = True
                elif res.cursor is not None and res.cursor != h.cursor and not h.lines:
                    # A cursor that moved past nothing (the end of a file opened with
                    # --from end, a token past empty pages): store it when nothing is in
                    # flight, or a restart would re-decide where to start.
                    h.cursor = res.cursor
                    if not h.inflight:
                        with contextlib.suppress(ClaimLostError):
                            self.ledger.checkpoint(
                                h.claim, h.position, 0, opts.lease_seconds, h.cursor
                            )
                if not res.caught_up:
                    caught_up = False
                h.caught_up = res.caught_up
                h.finished = res.finished
            due = bool(h.lines) and (
                len(h.lines) >= opts.batch_lines
                or h.nbytes >= opts.batch_bytes
                or time.monotonic() - h.since >= opts.batch_wait
                or h.finished
                or (h.caught_up and not self.follow)
            )
            if due:
                self._hand_over(h)
                busy = True
            if h.finished and not h.lines and not h.inflight and not h.abandoned:
                self._finish(key, h)
        return busy, caught_up

    def _hand_over(self, h: _Held) -> None:
        """Give the held records to the flusher (blocks while two batches wait: back-pressure)."""
        job = _Job(h, h.take(self.source.id), h.cursor)
        h.position = job.batch.end
        # Encoding for the sinks (points, gzip, arrays) happens here, while the flusher is
        # still writing the previous batch; a failure is left for the flusher to meet again.
        for sink in h.route.sinks:
            try:
                sink.prepare(job.batch)
            except Exception as exc:
                log.debug("%s: preparing for %s failed: %s", h.info.key, sink, one_line(exc))
        with self._lock:
            h.inflight += 1
        # The flusher always makes room: it delivers, or gives up at once once stopping.
        self._jobs.put(job)

    def _flusher(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._deliver(job)
            except Exception as exc:  # never let the flusher die: the stream would stall
                log.error("%s: delivery failed: %s", job.held.info.key, one_line(exc))
                job.held.abandoned = True
            finally:
                with self._lock:
                    job.held.inflight -= 1

    def _deliver(self, job: _Job) -> None:
        """Write one batch to every sink, then checkpoint it: the ledger never runs ahead."""
        h, batch = job.held, job.batch
        if h.abandoned:
            return  # an earlier batch was not delivered: this one must not be checkpointed
        delay = 1.0
        while True:
            try:
                for sink in h.route.sinks:
                    if id(sink) not in batch.prepared:
                        sink.prepare(batch)
                    sink.write(batch)
                break
            except Exception as exc:
                if not is_transient(exc):
                    self._record_range_failure(h, batch, exc)
                    break
                if self.stop.is_set() or self._closing:
                    h.abandoned = True  # resumes from the last checkpoint next time
                    return
                # Hold the batch and the ones behind it: a stream never drops data.
                wait = getattr(exc, "retry_after", None) or delay
                log.warning("%s: %s; retrying in %.0f s", h.info.key, one_line(exc), wait)
                if self.stop.wait(wait):
                    h.abandoned = True
                    return
                delay = min(delay * 2, 60.0)
        try:
            self.ledger.checkpoint(
                h.claim, batch.end, batch.nbytes, self.options.lease_seconds, job.cursor
            )
        except ClaimLostError as exc:
            self.progress.message(str(exc))
            h.abandoned = True
            return
        self._file_malformed(h, batch)
        with self._lock:
            self.result.lines += len(batch)
            self.result.bytes += batch.nbytes
        self.progress.advanced(len(batch), batch.nbytes)

    def _let_go(self, h: _Held) -> None:
        """Drop an abandoned partition once nothing of it is in flight (called every round)."""
        if h.inflight:
            return
        obj = ObjectInfo(h.info.key, 0, h.info.version, 0)
        for sink in h.route.sinks:
            sink.abort(self.source.id, obj)
        h.partition.close()
        self._held.pop(h.info.key, None)
        with contextlib.suppress(ClaimLostError):
            self.ledger.release(h.claim)

    def _file_malformed(self, h: _Held, batch: Batch) -> None:
        """Records a format could not parse were shipped raw; also list them in the error
        queue as ``PATH:RECORD`` (1-based), so nobody has to grep for them."""
        reasons = batch.column(MALFORMED_KEY)
        if reasons is None:
            return
        filed = 0
        for i, reason in enumerate(reasons):
            if reason is None:
                continue
            if filed >= MAX_MALFORMED_ENTRIES_PER_BATCH:
                with self._lock:
                    self._extra["malformed_not_filed"] += 1
                continue
            line = batch.lines[i]
            key = f"{h.info.key}:{batch.start + i + 1}"
            obj = ObjectInfo(key, len(line), h.info.version, batch.timestamps[i])
            claim = self.ledger.claim(self.source.id, obj, self.owner, self.options.lease_seconds)
            if claim is not None:
                snippet = line if len(line) <= 200 else line[:200] + "…"
                self.ledger.fail(claim, f"{reason}: {snippet}", "MalformedRecord")
            filed += 1

    def _record_range_failure(self, h: _Held, batch: Batch, exc: Exception) -> None:
        """A batch refused for good: keep it in the error queue as a record range, go on."""
        key = f"{h.info.key}#{batch.start}-{batch.end}"
        error = one_line(exc)
        obj = ObjectInfo(
            key, batch.nbytes, h.info.version, batch.timestamps[0] if batch.timestamps else 0
        )
        claim = self.ledger.claim(self.source.id, obj, self.owner, self.options.lease_seconds)
        if claim is not None:
            self.ledger.fail(claim, error, type(exc).__name__)
        self._failed(key, h.info.version, error, remember=False)
        log.error("%s: records %d-%d refused: %s", h.info.key, batch.start, batch.end, error)

    def _drop_partition(self, h: _Held, exc: Exception) -> None:
        """A partition that cannot be read: into the error queue, let go once idle.

        What it read but did not ship is dropped here and read again from the ledger's
        position when the partition is retried (``drain``, or the next run).
        """
        error = one_line(exc)
        h.lines, h.timestamps, h.fields, h.has_fields, h.nbytes = [], [], [], False, 0
        h.col_parts = []
        h.abandoned = True
        with contextlib.suppress(ClaimLostError):
            self.ledger.fail(h.claim, error, type(exc).__name__)
        self._failed(h.info.key, h.info.version, error)
        self._let_go(h)

    def _finish(self, key: str, h: _Held) -> None:
        for sink in h.route.sinks:
            sink.commit(self.source.id, ObjectInfo(key, 0, h.info.version, 0))
        with contextlib.suppress(ClaimLostError):
            self.ledger.complete(h.claim)
        h.partition.close()
        del self._held[key]
        with self._lock:
            self.result.objects += 1

    def _failed(self, key: str, version: str, error: str, remember: bool = True) -> None:
        if remember:
            self._failed_parts.add((key, version))
        with self._lock:
            self.result.failed.append(Failure(key, error))
        self.progress.message(f"failed {key}: {error}")

    def _shutdown(self, flusher: threading.Thread) -> None:
        # Hand over what was read, let the flusher deliver what it can (a sink that is down
        # gives up at once when stopping), then give every claim back.
        for h in list(self._held.values()):
            if h.lines and not h.abandoned:
                self._hand_over(h)
        self._jobs.put(None)
        flusher.join()
        for h in list(self._held.values()):
            h.partition.close()
            with contextlib.suppress(ClaimLostError):
                self.ledger.release(h.claim)
        self._held.clear()
        counters: collections.Counter[str] = collections.Counter(self._extra)
        for sink in self.router.sinks():
            counters.update(sink.counters())
            self.result.reports.update(sink.report())
        counters.update(getattr(self.source, "counters", {}) or {})
        self.result.counters = {k: v for k, v in counters.items() if v}

    def _heartbeat(self) -> None:
        interval = self.options.lease_seconds / 3
        while not self._hb_stop.wait(interval):
            claims = [h.claim for h in list(self._held.values())]
            if claims:
                try:
                    self.ledger.renew(claims, self.options.lease_seconds)
                except Exception as exc:
                    log.warning("lease renewal failed: %s", one_line(exc))
