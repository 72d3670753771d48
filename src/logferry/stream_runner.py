"""The stream runner: follows growing partitions (log streams, files) into the sinks.

Where :mod:`logferry.runner` ships finite objects, this one reads partitions that keep
growing. It claims each partition in the ledger (so two runners never read the same one),
reads what is new into the partition's buffer, and hands each sink of the partition's route
its own batches, cut by that sink's lines, bytes and wait limits (``Sink.batching``, else the
run's). The ledger checkpoint of a partition is the position every one of its sinks has
acknowledged, so nothing is checkpointed before all sinks have it (invariant 1), and a
record leaves the buffer only then.

Reading, decoding and the sinks' ``prepare`` (encoding) run in the calling thread. Each sink
has a delivery thread of its own, which writes that sink's batches in order, one at a time,
so parsing overlaps with database and network work, and one sink that is down does not hold
up the others: its batches wait (nothing is dropped) while the other sinks go on, until the
partition's buffer is full (a bounded number of batches); only then does reading that
partition pause (back-pressure). Partitions routed to other sinks are not affected.

A sink that keeps failing with a transient error is retried with a growing delay. A batch a
sink refuses for good (a 400, a handler exception) becomes an entry in the error queue naming
the partition and its record range, and the stream goes on (invariant 3).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from logferry.config import ShipOptions
from logferry.errors import is_transient
from logferry.ledger.base import Claim, ClaimLostError, Ledger, new_owner_id
from logferry.records import MALFORMED_KEY, Batch, Chunk, ObjectInfo, concat_chunks
from logferry.runner import Failure, Progress, Route, Router, ShipResult, one_line
from logferry.sinks.base import Batching, Sink
from logferry.sources.stream import PartitionInfo, StreamPartition, StreamSource

log = logging.getLogger("logferry")

#: A file of garbage must not turn into a million ledger rows per batch.
MAX_MALFORMED_ENTRIES_PER_BATCH = 100
#: Batches of one partition a sink may have waiting for delivery: enough to overlap.
MAX_INFLIGHT_PER_LANE = 2
#: Longest wait between two attempts of a sink that is down (a Retry-After included).
MAX_RETRY_WAIT = 60.0
#: A partition buffers at most this many of its largest batch before reading pauses.
BUFFER_BATCHES = 3


@dataclass
class _Run:
    """Records read in one go: positions ``[start, start + len(chunk))``, and the cursor
    just after them."""

    start: int
    chunk: Chunk
    nbytes: int
    cursor: str | None
    #: When it was read (monotonic): batch waits count from here.
    read_at: float

    @property
    def end(self) -> int:
        return self.start + len(self.chunk)


@dataclass
class _Lane:
    """One sink's progress through one partition."""

    sink: Sink
    batching: Batching
    #: Records handed to the sink's delivery thread, and acknowledged by the sink.
    sent: int
    acked: int
    inflight: int = 0


@dataclass
class _Held:
    """A claimed, open partition, its buffer of records not yet checkpointed, its lanes."""

    info: PartitionInfo
    claim: Claim
    partition: StreamPartition
    route: Route
    lanes: list[_Lane]
    #: Records read (the end of the buffer) and checkpointed (its start).
    position: int
    base: int
    runs: collections.deque[_Run] = field(default_factory=collections.deque)
    buffered_bytes: int = 0
    cursor: str | None = None
    caught_up: bool = False
    finished: bool = False
    read_after: float = 0.0
    read_delay: float = 0.5
    read_failures: int = 0
    #: A batch could not be delivered (shutdown) or the claim was lost: nothing more is
    #: checkpointed, and the partition is let go.
    abandoned: bool = False
    #: Serialises checkpoints of this partition across the sinks' delivery threads.
    checkpointing: threading.Lock = field(default_factory=threading.Lock)

    @property
    def inflight(self) -> int:
        return sum(lane.inflight for lane in self.lanes)

    @property
    def largest_batch(self) -> int:
        return max(lane.batching.lines for lane in self.lanes)

    def buffer_full(self) -> bool:
        size = max(lane.batching.bytes for lane in self.lanes) * BUFFER_BATCHES
        return self.room() <= 0 or self.buffered_bytes >= size

    def room(self) -> int:
        """Records that may still be read before the buffer is full."""
        return self.largest_batch * BUFFER_BATCHES - (self.position - self.base)

    def add(self, chunk: Chunk, cursor: str | None, now: float) -> None:
        nbytes = sum(map(len, chunk.lines))
        self.runs.append(_Run(self.position, chunk, nbytes, cursor, now))
        self.position += len(chunk)
        self.buffered_bytes += nbytes
        if cursor is not None:
            self.cursor = cursor

    def waiting_since(self, lane: _Lane) -> float:
        """When the oldest record not yet handed to ``lane`` was read."""
        for run in self.runs:
            if run.start >= lane.sent:
                return run.read_at
        return time.monotonic()

    def unsent_bytes(self, lane: _Lane) -> int:
        total = 0
        for run in reversed(self.runs):
            if run.start < lane.sent:
                break
            total += run.nbytes
        return total

    def batch(self, source: str, start: int, batching: Batching) -> Batch:
        """Records from ``start`` (where a run begins) to the end of the run that reaches
        ``batching``'s lines or bytes, or to the end of the buffer, as one batch."""
        runs: list[_Run] = []
        lines_in = bytes_in = 0
        for run in self.runs:
            if run.start < start:
                continue
            runs.append(run)
            lines_in += len(run.chunk)
            bytes_in += run.nbytes
            if lines_in >= batching.lines or bytes_in >= batching.bytes:
                break
        chunk = concat_chunks([run.chunk for run in runs])
        batch = Batch(
            source,
            self.info.key,
            start,
            start + lines_in,
            chunk.lines,
            chunk.timestamps,
            chunk.fields,  # type: ignore[arg-type]
            bytes_in,
        )
        batch.columns = chunk.columns
        return batch


@dataclass
class _Job:
    """One batch for a sink's delivery thread."""

    held: _Held
    lane: _Lane
    batch: Batch


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
        #: Partitions a one-off run stopped retrying (held): not taken again in this run.
        self._given_up: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._hb_stop = threading.Event()
        # One delivery queue per sink; each lane keeps at most MAX_INFLIGHT_PER_LANE in it.
        self._queues: dict[int, queue.Queue[_Job | None]] = {
            id(sink): queue.Queue() for sink in self.router.sinks()
        }
        self._extra: collections.Counter[str] = collections.Counter()
        #: Set when the run ends by an exception: delivery threads stop retrying at once.
        self._closing = threading.Event()
        #: Set by a delivery thread after each batch: the reader may have room again.
        self._delivered = threading.Event()
        opts = self.options
        self._batching = Batching(opts.batch_lines, opts.batch_bytes, opts.batch_wait)

    # -- the loop ------------------------------------------------------------------

    def run(self) -> ShipResult:
        """Follow (or, without ``follow``, read to the current end of) every partition."""
        began = time.monotonic()
        heartbeat = threading.Thread(target=self._heartbeat, name="logferry-lease", daemon=True)
        heartbeat.start()
        flushers = [
            threading.Thread(
                target=self._flusher, args=(q,), name=f"logferry-flush-{i}", daemon=True
            )
            for i, q in enumerate(self._queues.values())
        ]
        for thread in flushers:
            thread.start()
        last_discover = -1e9
        try:
            while not self.stop.is_set():
                if time.monotonic() - last_discover >= self.discover_interval:
                    self._discover()
                    last_discover = time.monotonic()
                self._delivered.clear()
                busy, caught_up = self._round()
                if not self.follow and caught_up and not self._pending():
                    break
                if not busy:
                    if self._held_back():
                        # Waiting on the sinks, not on new data: wake at the next delivery.
                        self._delivered.wait(self._idle_wait())
                    else:
                        self.source.wait(self._idle_wait())
        except BaseException:
            self._closing.set()  # the delivery threads must not retry behind a crash
            raise
        finally:
            self._shutdown(flushers)
            self._hb_stop.set()  # after delivery: leases stay renewed while it finishes
            self.result.seconds = time.monotonic() - began
            self.result.interrupted = self.stop.is_set() and self.follow is False
            self.progress.close()
        return self.result

    def _idle_wait(self) -> float:
        # Wake in time to hand over a batch whose wait is over.
        now = time.monotonic()
        wait = self.poll_interval
        with self._lock:
            for h in self._held.values():
                for lane in h.lanes:
                    if lane.sent < h.position and lane.inflight < MAX_INFLIGHT_PER_LANE:
                        due = h.waiting_since(lane) + lane.batching.wait
                        wait = min(wait, max(0.0, due - now))
        return max(wait, 0.005)

    def _held_back(self) -> bool:
        """A partition waits for its sinks: its buffer is full, or a batch is due for a
        sink that already has all the batches it may have in flight."""
        for h in self._held.values():
            if h.abandoned or (h.finished and h.base == h.position):
                continue
            if h.buffer_full() or any(
                lane.inflight >= MAX_INFLIGHT_PER_LANE and lane.sent < h.position
                for lane in h.lanes
            ):
                return True
        return False

    def _pending(self) -> bool:
        """Records read but not yet checkpointed, here or with the delivery threads."""
        return any(h.base < h.position or h.inflight for h in self._held.values())

    def _discover(self) -> None:
        try:
            parts = self.source.partitions()
        except Exception as exc:
            log.warning("listing %s failed: %s", self.source.display, one_line(exc))
            return
        for info in parts:
            part = (info.key, info.version)
            if info.key in self._held or part in self._failed_parts or part in self._given_up:
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
        if self.source.versions_identify_content:
            other = self.ledger.held_elsewhere(self.source.id, info.version, info.key)
            if other is not None:
                # Another runner follows this content under its old name (a file renamed
                # while it reads): leave it to that one, or both would ship it.
                log.debug("%s: the same content is being read as %s", info.key, other)
                with contextlib.suppress(ClaimLostError):
                    self.ledger.release(claim)
                return
        cursor, position = claim.cursor, claim.position
        if cursor is None and position == 0 and self.source.versions_identify_content:
            # Same content under a new name (a file renamed while nobody ran): carry on.
            moved = self.ledger.latest_cursor(self.source.id, info.version)
            if moved is not None:
                old_key, position, cursor = moved
                # Records after the old name's checkpoint are read again under the new one:
                # sinks that keep per-partition output drop them (and a torn line) there.
                old = ObjectInfo(old_key, 0, info.version, 0)
                for sink in route.sinks:
                    try:
                        sink.settle(self.source.id, old, position)
                    except Exception as exc:
                        log.warning("%s: %s: %s", old_key, sink.name, one_line(exc))
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
        lanes = [
            _Lane(sink, sink.batching or self._batching, position, position) for sink in route.sinks
        ]
        self._held[info.key] = _Held(info, claim, partition, route, lanes, position, position)
        self.progress.object_started(obj)

    def _round(self) -> tuple[bool, bool]:
        """One pass over the held partitions: read, hand over what is due. (busy, caught up)."""
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
            if readable and h.buffer_full():
                caught_up = False  # a sink is behind: read on once it acknowledges
            elif readable:
                try:
                    res = h.partition.read(min(h.room(), h.largest_batch))
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
                    with self._lock:
                        h.add(res.chunk, res.cursor, time.monotonic())
                    busy = True
                elif res.cursor is not None and res.cursor != h.cursor:
                    self._cursor_moved(h, res.cursor)
                if not res.caught_up:
                    caught_up = False
                h.caught_up = res.caught_up
                h.finished = res.finished
            if self._hand_over_due(h):
                busy = True
            if h.finished and h.base == h.position and not h.inflight and not h.abandoned:
                self._finish(key, h)
        return busy, caught_up

    def _cursor_moved(self, h: _Held, cursor: str) -> None:
        """A cursor that moved past no records (the end of a file opened with ``--from end``,
        a token past empty pages): it belongs after the last buffered record, or, with
        nothing buffered, straight into the ledger, or a restart would re-decide where to start.
        """
        with self._lock:
            h.cursor = cursor
            if h.runs:
                h.runs[-1].cursor = cursor
                return
        with h.checkpointing:
            if h.base == h.position and not h.abandoned:
                try:
                    self.ledger.checkpoint(
                        h.claim, h.position, 0, self.options.lease_seconds, cursor
                    )
                except ClaimLostError as exc:
                    self.progress.message(str(exc))
                    h.abandoned = True

    def _hand_over_due(self, h: _Held, *, force: bool = False) -> bool:
        """Give each sink the records that are due for it; True if any batch was handed over."""
        now = time.monotonic()
        drain = force or h.finished or (h.caught_up and not self.follow)
        built: dict[tuple[int, Batching], Batch] = {}  # lanes due alike share a batch
        handed = False
        for lane in h.lanes:
            while lane.sent < h.position and (force or lane.inflight < MAX_INFLIGHT_PER_LANE):
                b = lane.batching
                # Under the lock: delivery threads drop acknowledged runs from the buffer.
                with self._lock:
                    if not (
                        drain
                        or h.position - lane.sent >= b.lines
                        or now - h.waiting_since(lane) >= b.wait
                        or h.unsent_bytes(lane) >= b.bytes
                    ):
                        break
                    batch = built.get((lane.sent, b))
                    if batch is None:
                        batch = built[(lane.sent, b)] = h.batch(self.source.id, lane.sent, b)
                    lane.sent = batch.end
                    lane.inflight += 1
                # Encoding (points, gzip, arrays) happens here, while the delivery thread is
                # still writing the previous batch; a failure is left for delivery to meet.
                try:
                    lane.sink.prepare(batch)
                except Exception as exc:
                    log.debug(
                        "%s: preparing for %s failed: %s", h.info.key, lane.sink, one_line(exc)
                    )
                self._queues[id(lane.sink)].put(_Job(h, lane, batch))
                handed = True
        return handed

    def _flusher(self, jobs: queue.Queue[_Job | None]) -> None:
        while (job := jobs.get()) is not None:
            try:
                self._deliver(job)
            except Exception as exc:  # never let a delivery thread die: the stream would stall
                log.error("%s: delivery failed: %s", job.held.info.key, one_line(exc))
                job.held.abandoned = True
            finally:
                with self._lock:
                    job.lane.inflight -= 1
                self._delivered.set()

    def _deliver(self, job: _Job) -> None:
        """Write one batch to one sink, then checkpoint what every sink now has."""
        h, lane, batch, sink = job.held, job.lane, job.batch, job.lane.sink
        if h.abandoned:
            return  # an earlier batch was not delivered: this one must not be checkpointed
        delay = 1.0
        attempts = 0
        while True:
            try:
                if id(sink) not in batch.prepared:
                    sink.prepare(batch)
                sink.write(batch)
                break
            except Exception as exc:
                batch.prepared.pop(id(sink), None)
                if not is_transient(exc):
                    self._record_range_failure(h, batch, exc, sink)
                    break
                if self._halted() or h.abandoned:
                    h.abandoned = True  # resumes from the last checkpoint next time
                    return
                attempts += 1
                if not self.follow and attempts >= self.options.max_attempts:
                    # A one-off run does not wait forever: the next run resumes here.
                    h.abandoned = True
                    with self._lock:
                        self.result.held += 1
                        self._given_up.add((h.info.key, h.info.version))
                    self.progress.message(
                        f"held {h.info.key}: {sink.name} still failing after {attempts} "
                        f"attempts ({one_line(exc)}); the next run resumes at the checkpoint"
                    )
                    return
                # Hold this sink's batches of the partition: a stream never drops data.
                wait = min(getattr(exc, "retry_after", None) or delay, MAX_RETRY_WAIT)
                log.warning("%s: %s: %s; retrying in %.0f s", h.info.key, sink.name,
                            one_line(exc), wait)  # fmt: skip
                if self._sleep(wait) or h.abandoned:
                    h.abandoned = True
                    return
                delay = min(delay * 2, MAX_RETRY_WAIT)
        with self._lock:
            lane.acked = batch.end
        self._checkpoint(h)

    def _halted(self) -> bool:
        return self.stop.is_set() or self._closing.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the run stops or crashes first (then True)."""
        deadline = time.monotonic() + seconds
        while not self._halted():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._closing.wait(min(left, 0.1))  # stop is polled: it is not ours to wait on
        return True

    def _checkpoint(self, h: _Held) -> None:
        """Move the partition's checkpoint to what all its sinks acknowledged."""
        with h.checkpointing:
            with self._lock:
                target = min(lane.acked for lane in h.lanes)
                if target <= h.base or h.abandoned:
                    return
                done = [run for run in h.runs if run.end <= target]
                # Acknowledgements end batches, and batches end where runs do.
                if not done or done[-1].end != target:
                    return
                cursor = done[-1].cursor
            nbytes = sum(run.nbytes for run in done)
            try:
                self.ledger.checkpoint(h.claim, target, nbytes, self.options.lease_seconds, cursor)
            except ClaimLostError as exc:
                self.progress.message(str(exc))
                h.abandoned = True
                return
            with self._lock:
                self.result.lines += target - done[0].start
                self.result.bytes += nbytes
                if h.abandoned or not h.runs or h.runs[0] is not done[0]:
                    return  # dropped meanwhile: its buffer is gone already
                for _ in done:
                    h.runs.popleft()
                h.buffered_bytes -= nbytes
                h.base = target
                # A cursor that moved past nothing after the last run was read: keep it too.
                later = h.cursor if not h.runs and h.base == h.position else None
            if later is not None and later != cursor:
                with contextlib.suppress(ClaimLostError):
                    self.ledger.checkpoint(h.claim, target, 0, self.options.lease_seconds, later)
            self._file_malformed(h, done)
            self.progress.advanced(target - done[0].start, nbytes)

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

    def _file_malformed(self, h: _Held, runs: list[_Run]) -> None:
        """Records a format could not parse were shipped raw; also list them in the error
        queue as ``PATH:RECORD`` (1-based), so nobody has to grep for them."""
        filed = 0
        for run in runs:
            reasons = (run.chunk.columns or {}).get(MALFORMED_KEY)
            if reasons is None:
                continue
            for i, reason in enumerate(reasons):
                if reason is None:
                    continue
                if filed >= MAX_MALFORMED_ENTRIES_PER_BATCH:
                    with self._lock:
                        self._extra["malformed_not_filed"] += 1
                    continue
                line = run.chunk.lines[i]
                key = f"{h.info.key}:{run.start + i + 1}"
                obj = ObjectInfo(key, len(line), h.info.version, run.chunk.timestamps[i])
                claim = self.ledger.claim(
                    self.source.id, obj, self.owner, self.options.lease_seconds
                )
                if claim is not None:
                    snippet = line if len(line) <= 200 else line[:200] + "…"
                    self.ledger.fail(claim, f"{reason}: {snippet}", "MalformedRecord")
                filed += 1

    def _record_range_failure(self, h: _Held, batch: Batch, exc: Exception, sink: Sink) -> None:
        """A batch refused for good: keep it in the error queue as a record range, go on."""
        key = f"{h.info.key}#{batch.start}-{batch.end}"
        error = f"{sink.name}: {one_line(exc)}"
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
        with self._lock:
            h.abandoned = True
            h.runs.clear()
            h.buffered_bytes = 0
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

    def _shutdown(self, flushers: list[threading.Thread]) -> None:
        # Hand over what was read, let the delivery threads deliver what they can (a sink
        # that is down gives up at once when stopping), then give every claim back.
        for h in list(self._held.values()):
            if not h.abandoned:
                self._hand_over_due(h, force=True)
        for jobs in self._queues.values():
            jobs.put(None)
        for thread in flushers:
            thread.join()
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
            held = {id(h.claim): h for h in list(self._held.values())}
            if not held:
                continue
            try:
                lost = self.ledger.renew(
                    [h.claim for h in held.values()], self.options.lease_seconds
                )
            except Exception as exc:
                log.warning("lease renewal failed: %s", one_line(exc))
                continue
            for claim in lost:
                h = held[id(claim)]
                if not h.abandoned and not (h.finished and h.base == h.position):
                    # Another runner has it now (this one paused past its lease): stop here.
                    h.abandoned = True
                    self.progress.message(f"{h.info.key}: claim lost to another runner")
