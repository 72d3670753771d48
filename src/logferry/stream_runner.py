"""The stream runner: follows growing partitions (log streams, files) into the sinks.

Where :mod:`logferry.runner` ships finite objects, this one reads partitions that keep
growing. It claims each partition in the ledger (so two runners never read the same one),
reads what is new, batches it by lines, bytes and wait time, hands each batch to every sink
of the partition's route, and only then checkpoints the batch's end position and the
partition's cursor (invariant 1).

A sink that keeps failing with a transient error holds the batch and is retried with a
growing delay: nothing is dropped. A batch a sink refuses for good (a 400, a handler
exception) becomes an entry in the error queue naming the partition and its record range,
and the stream goes on (invariant 3).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from logferry.config import ShipOptions
from logferry.errors import is_transient
from logferry.ledger.base import Claim, ClaimLostError, Ledger, new_owner_id
from logferry.records import MALFORMED_KEY, Batch, Chunk, ObjectInfo
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
    nbytes: int = 0
    cursor: str | None = None
    since: float = 0.0
    retry_at: float = 0.0
    retry_delay: float = 1.0
    finished: bool = False

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
        self.lines, self.timestamps, self.fields, self.has_fields, self.nbytes = (
            [],
            [],
            [],
            False,
            0,
        )
        return batch


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

    # -- the loop ------------------------------------------------------------------

    def run(self) -> ShipResult:
        """Follow (or, without ``follow``, read to the current end of) every partition."""
        began = time.monotonic()
        heartbeat = threading.Thread(target=self._heartbeat, name="logferry-lease", daemon=True)
        heartbeat.start()
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
        finally:
            self._shutdown()
            self._hb_stop.set()
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
            if h.retry_at > now:
                wait = min(wait, h.retry_at - now)
        return max(wait, 0.005)

    def _pending(self) -> bool:
        return any(h.lines for h in self._held.values())

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
        obj = ObjectInfo(info.key, info.size, info.version, info.last_modified_ms)
        try:
            for sink in route.sinks:
                sink.open(self.source.id, obj, position, stream=True)
        except Exception as exc:
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
            if not h.finished and len(h.lines) < opts.batch_lines and h.nbytes < opts.batch_bytes:
                try:
                    res = h.partition.read(opts.batch_lines - len(h.lines))
                except Exception as exc:
                    self._drop_partition(h, exc)
                    continue
                if len(res.chunk):
                    h.add(res.chunk, res.cursor)
                    busy = True
                elif res.cursor is not None and res.cursor != h.cursor and not h.lines:
                    h.cursor = res.cursor  # e.g. a stream's token moved past nothing
                if not res.caught_up:
                    caught_up = False
                h.finished = res.finished
            due = bool(h.lines) and (
                len(h.lines) >= opts.batch_lines
                or h.nbytes >= opts.batch_bytes
                or time.monotonic() - h.since >= opts.batch_wait
                or h.finished
                or not self.follow
            )
            if due and time.monotonic() >= h.retry_at:
                busy = self._flush(h) or busy
            if h.finished and not h.lines:
                self._finish(key, h)
        return busy, caught_up

    def _flush(self, h: _Held) -> bool:
        """Ship the held records; True when they were acknowledged (or set aside)."""
        batch = h.take(self.source.id)
        try:
            for sink in h.route.sinks:
                sink.prepare(batch)
                sink.write(batch)
        except Exception as exc:
            if is_transient(exc) and not self.stop.is_set():
                # Hold the records and try again later: a stream never drops data.
                self._restore(h, batch)
                h.retry_at = time.monotonic() + h.retry_delay
                h.retry_delay = min(h.retry_delay * 2, 60.0)
                log.warning("%s: %s; retrying in %.0f s", h.info.key, one_line(exc), h.retry_delay)
                return False
            if self.stop.is_set() and is_transient(exc):
                self._restore(h, batch)
                return False
            self._record_range_failure(h, batch, exc)
        h.retry_delay = 1.0
        try:
            self.ledger.checkpoint(
                h.claim, batch.end, batch.nbytes, self.options.lease_seconds, h.cursor
            )
        except ClaimLostError as exc:
            self.progress.message(str(exc))
            h.partition.close()
            del self._held[h.info.key]
            return False
        h.position = batch.end
        self._file_malformed(h, batch)
        with self._lock:
            self.result.lines += len(batch)
            self.result.bytes += batch.nbytes
        self.progress.advanced(len(batch), batch.nbytes)
        return True

    def _file_malformed(self, h: _Held, batch: Batch) -> None:
        """Records a format could not parse were shipped raw; also list them in the error
        queue as ``PATH:RECORD`` (1-based), so nobody has to grep for them."""
        if batch.fields is None:
            return
        filed = 0
        for i, fields in enumerate(batch.fields):
            reason = fields.get(MALFORMED_KEY) if fields else None
            if reason is None:
                continue
            if filed >= MAX_MALFORMED_ENTRIES_PER_BATCH:
                self.result.counters["malformed_not_filed"] = (
                    self.result.counters.get("malformed_not_filed", 0) + 1
                )
                continue
            line = batch.lines[i]
            key = f"{h.info.key}:{batch.start + i + 1}"
            obj = ObjectInfo(key, len(line), h.info.version, batch.timestamps[i])
            claim = self.ledger.claim(self.source.id, obj, self.owner, self.options.lease_seconds)
            if claim is not None:
                snippet = line if len(line) <= 200 else line[:200] + "…"
                self.ledger.fail(claim, f"{reason}: {snippet}", "MalformedRecord")
            filed += 1

    @staticmethod
    def _restore(h: _Held, batch: Batch) -> None:
        h.lines = batch.lines + h.lines
        h.timestamps = batch.timestamps + h.timestamps
        if batch.fields is not None or h.has_fields:
            old = batch.fields if batch.fields is not None else [None] * len(batch)
            new = h.fields if h.has_fields else [None] * (len(h.lines) - len(batch))
            h.fields, h.has_fields = list(old) + list(new), True
        h.nbytes += batch.nbytes
        h.since = time.monotonic()

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
        error = one_line(exc)
        with contextlib.suppress(ClaimLostError):
            self.ledger.fail(h.claim, error, type(exc).__name__)
        h.partition.close()
        del self._held[h.info.key]
        self._failed(h.info.key, h.info.version, error)

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

    def _shutdown(self) -> None:
        # Ship what was read (unless a second signal forces the exit), then hand back.
        for h in list(self._held.values()):
            if h.lines and not h.finished:
                with contextlib.suppress(Exception):
                    self._flush(h)
            h.partition.close()
            with contextlib.suppress(ClaimLostError):
                self.ledger.release(h.claim)
        self._held.clear()
        counters: collections.Counter[str] = collections.Counter()
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
