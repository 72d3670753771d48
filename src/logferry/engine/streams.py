"""The stream runner: follows growing partitions (log streams, files) into the sinks.

Where :mod:`logferry.engine.objects` ships finite objects, this one reads partitions that
keep growing. It claims each partition in the ledger (so two runners never read the same
one), reads what is new into the partition's buffer (:mod:`logferry.engine.buffer`), and
hands each sink of the partition's route its own batches, cut by that sink's lines, bytes
and wait limits. The checkpoint of a partition is the position every one of its sinks
acknowledged (invariant 1).

Reading, decoding (the route's format, through :class:`StreamDecoder`) and the sinks'
``prepare`` run in the calling thread. Each sink has a delivery thread of its own, so one
sink that is down does not hold up the others: its batches wait (nothing is dropped) until
the partition's buffer is full; only then does reading that partition pause.

Delivery and checkpoints are :mod:`logferry.engine.lanes`. Every batch ends in one outcome
from the :class:`Deliverer`. A batch a sink refused for good becomes a dead letter (its
records, kept in the ledger for ``drain``) and the stream goes on (invariant 3); a sink still
failing when a one-off run's retry time runs out holds the partition at its checkpoint for
the next run.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

from logferry.codecs.stream import StreamDecoder
from logferry.config import ShipOptions
from logferry.engine.buffer import MAX_INFLIGHT_PER_LANE, Held
from logferry.engine.delivery import Deliverer
from logferry.engine.errorqueue import ErrorQueue
from logferry.engine.lanes import Job, Lanes
from logferry.engine.leases import LeaseKeeper
from logferry.engine.metrics import METRICS, measure_lag
from logferry.engine.objects import format_options_of, retry_policy_of
from logferry.engine.results import Progress, ShipResult, close_result, one_line
from logferry.engine.routing import Router
from logferry.engine.taking import PartitionFailed, Taker, as_object, idle_notice
from logferry.errors import is_transient
from logferry.ledger.base import Claim, ClaimLostError, Ledger, new_owner_id
from logferry.records import Batch
from logferry.sinks.base import Batching
from logferry.sources.stream import Cursor, PartitionInfo, StreamSource

log = logging.getLogger("logferry")


class StreamRunner:
    """Reads every partition of a stream source into the sinks of its route."""

    def __init__(
        self,
        source: StreamSource,
        router: Router,
        ledger: Ledger,
        options: ShipOptions | None = None,
        *,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        discover_interval: float = 5.0,
        poll_interval: float = 0.25,
    ) -> None:
        self.options = opts = options or ShipOptions()
        self.router = router
        self.source = source
        self.ledger = ledger
        self.follow = opts.follow
        self.progress = progress or Progress()
        self.progress.unit = source.unit
        self.stop = stop or threading.Event()
        self.discover_interval = discover_interval
        self.poll_interval = poll_interval
        self.owner = new_owner_id()
        self.result = ShipResult(source.display, unit=source.unit)
        self.errors = ErrorQueue(ledger, self.result, self._announce)
        self.leases = LeaseKeeper(ledger, opts.lease_seconds, self._claim_lost)
        self.deliverer = Deliverer(retry_policy_of(opts), self.stop)
        self._held: dict[str, Held] = {}
        #: Partitions that failed or that a one-off run stopped retrying: not taken again.
        self._skip: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._decoders: list[StreamDecoder] = []
        self.taker = Taker(
            source,
            router,
            ledger,
            self.owner,
            opts.lease_seconds,
            format_options_of(opts),
            Batching(opts.batch_lines, opts.batch_bytes, opts.batch_wait),
        )
        self.lanes = Lanes(
            router.sinks(),
            ledger,
            opts.lease_seconds,
            self.deliverer,
            self.errors,
            self.result,
            self.progress,
            self._lock,
            on_lost=self._claim_lost,
            on_held=self._held_for_next_run,
        )
        self._discover_now = threading.Event()
        self._listed = False  # the first listing is done
        self._told = ""  # the last warning about the listing, said once

    # -- the loop ------------------------------------------------------------------

    def request_discovery(self) -> None:
        """List the partitions again at the next turn (the source's filters were reloaded)."""
        self._discover_now.set()

    def run(self) -> ShipResult:
        """Follow (or, without ``follow``, read to the current end of) every partition."""
        began = time.monotonic()
        self.leases.start()
        self.lanes.start()
        last_discover = -1e9
        try:
            while not self.stop.is_set():
                if (
                    self.source.listing_changed()
                    or self._discover_now.is_set()
                    or time.monotonic() - last_discover >= self.discover_interval
                ):
                    self._discover_now.clear()
                    self._discover()
                    last_discover = time.monotonic()
                self.lanes.delivered.clear()
                busy, caught_up = self._round()
                if not self.follow and caught_up and not self._pending():
                    break
                if not busy:
                    if self._held_back():  # waiting on the sinks: wake at the next delivery
                        self.lanes.delivered.wait(self._idle_wait())
                    else:
                        self.source.wait(self._idle_wait())
        except BaseException:
            self.lanes.closing.set()  # the delivery threads must not retry behind a crash
            raise
        finally:
            self._shutdown()
            self.leases.stop()  # after delivery: leases stay renewed while it finishes
            self.result.seconds = time.monotonic() - began
            self.result.interrupted = self.stop.is_set() and not self.follow
            self.progress.close()
        return self.result

    def _idle_wait(self) -> float:
        # Wake in time to hand over a batch whose wait is over.
        with self._lock:
            due = min((h.next_due() for h in self._held.values()), default=self.poll_interval)
        return max(min(due, self.poll_interval), 0.005)

    def _held_back(self) -> bool:
        """Some partition waits for its sinks rather than for new data."""
        return any(h.held_back() for h in self._held.values())

    def _pending(self) -> bool:
        """Records read but not yet checkpointed, here or with the delivery threads."""
        return any(h.base < h.position or h.inflight for h in self._held.values())

    # -- taking partitions -------------------------------------------------------------

    def _discover(self) -> None:
        try:
            parts = self.source.partitions()
        except Exception as exc:
            log.warning("listing %s failed: %s", self.source.display, one_line(exc))
            METRICS.health(f"source {self.source.display}", False, one_line(exc))
            return
        METRICS.health(f"source {self.source.display}", True)
        for h in list(self._held.values()):
            if not h.abandoned and not self.source.selects(h.info.key):
                h.abandoned = True  # let go next round; unacknowledged records come again
        holders: dict[str, str] = {}
        for info in parts:
            if info.key not in self._held and (info.key, info.version) not in self._skip:
                holder = self._take(info)
                if holder is not None:
                    holders[info.key] = holder
        self._tell(parts, holders)

    def _tell(self, parts: list[PartitionInfo], holders: dict[str, str]) -> None:
        """Warn once when there is nothing to read: nothing matched, or others hold it all."""
        text = idle_notice(self.source, parts, holders, first=not self._listed,
                           holding=bool(self._held))  # fmt: skip
        self._listed = True
        if text and text != self._told:
            log.warning("%s", text)
        self._told = text

    def _fail_partition(self, info: PartitionInfo, claim: Claim, error: str, cls: str) -> None:
        self._skip.add((info.key, info.version))
        self.errors.failed(claim, info.key, error, cls)

    def _take(self, info: PartitionInfo) -> str | None:
        """Claim and open ``info``; the owner id of another runner holding it, if one does."""
        try:
            h = self.taker.take(info)
        except PartitionFailed as exc:
            self._fail_partition(info, exc.claim, exc.error, exc.error_class)
            return None
        if h is None:
            log.debug("%s: held by another runner, or done", info.key)
            return self.taker.holder(info)
        log.info("claimed %s (from record %d)", info.key, h.position)
        self._held[info.key] = h
        if h.decoder is not None:
            self._decoders.append(h.decoder)
        self.leases.hold(h.claim)
        self.progress.object_started(as_object(info))
        return None

    # -- reading and handing over ----------------------------------------------------

    def _round(self) -> tuple[bool, bool]:
        """One pass over the held partitions: read, hand over what is due. (busy, caught up)."""
        busy = False
        caught_up = True
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
                read, done = self._read(h)
                busy = busy or read
                caught_up = caught_up and done
            if self._hand_over_due(h):
                busy = True
            if h.drained and not h.inflight and not h.abandoned:
                self._finish(key, h)
        return busy, caught_up

    def _read(self, h: Held) -> tuple[bool, bool]:
        """Read what is new in ``h`` into its buffer: (read anything, caught up)."""
        try:
            res = h.partition.read(min(h.room(), h.largest_batch))
        except Exception as exc:
            h.read_failures += 1
            if is_transient(exc) and h.read_failures < self.options.max_attempts:
                # Throttled or cut off: keep the partition and what it read; retry.
                h.read_delay = min(h.read_delay * 2, 60.0)
                h.read_after = time.monotonic() + h.read_delay
                log.warning(
                    "%s: %s; reading again in %.0f s", h.info.key, one_line(exc), h.read_delay
                )
                return False, False
            self._drop_partition(h, exc)
            return False, True
        h.read_delay, h.read_failures = 0.5, 0
        measure_lag(self.source.id, h)
        read = bool(len(res.chunk))
        if read:
            with self._lock:
                h.add(res.chunk, res.cursor, time.monotonic())
        elif res.cursor is not None and res.cursor != h.cursor:
            self._cursor_moved(h, res.cursor)
        h.caught_up = res.caught_up
        h.finished = res.finished
        return read, res.caught_up

    def _cursor_moved(self, h: Held, cursor: Cursor) -> None:
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
                self.lanes.store(h, h.position, 0, cursor)

    def _hand_over_due(self, h: Held, *, force: bool = False) -> bool:
        """Give each sink the records that are due for it; True if any batch was handed over."""
        now = time.monotonic()
        drain = force or h.finished or (h.caught_up and not self.follow)
        built: dict[tuple[int, Batching], Batch] = {}  # lanes due alike share a batch
        handed = False
        for lane in h.lanes:
            while lane.sent < h.position and (force or lane.inflight < MAX_INFLIGHT_PER_LANE):
                # Under the lock: delivery threads drop acknowledged runs from the buffer.
                with self._lock:
                    if not h.due(lane, now, drain):
                        break
                    batch = built.get((lane.sent, lane.batching))
                    if batch is None:
                        batch = h.batch(self.source.id, lane.sent, lane.batching)
                        batch.format = self._format_of(h)
                        built[(lane.sent, lane.batching)] = batch
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
                self.lanes.put(Job(h, lane, batch))
                handed = True
        return handed

    @staticmethod
    def _format_of(h: Held) -> str:
        return (h.decoder.format_name if h.decoder is not None else None) or ""

    # -- letting go --------------------------------------------------------------------

    def _announce(self, key: str, error: str) -> None:
        self.progress.message(f"failed {key}: {error}")

    def _held_for_next_run(self, h: Held) -> None:
        """A one-off run gave up on a sink of ``h``: not taken again in this run."""
        with self._lock:
            self.result.held += 1
            self._skip.add((h.info.key, h.info.version))

    def _claim_lost(self, claim: Claim) -> None:
        h = self._held.get(claim.key)
        if h is None or h.claim is not claim or h.abandoned or h.drained:
            return
        # Another runner has it now (this one paused past its lease): stop here.
        h.abandoned = True
        self.progress.message(f"{h.info.key}: claim lost to another runner")

    def _let_go(self, h: Held) -> None:
        """Drop an abandoned partition once nothing of it is in flight (called every round)."""
        if h.inflight:
            return
        for sink in h.route.sinks:
            sink.abort(self.source.id, as_object(h.info))
        h.partition.close()
        self._held.pop(h.info.key, None)
        self.leases.drop(h.claim)
        with contextlib.suppress(ClaimLostError):
            self.ledger.release(h.claim)

    def _drop_partition(self, h: Held, exc: Exception) -> None:
        """A partition that cannot be read: into the error queue, let go once idle.

        What it read but did not ship is read again from the ledger's position when the
        partition is retried (``drain``, or the next run).
        """
        with self._lock:
            h.abandoned = True
            h.runs.clear()
            h.buffered_bytes = 0
        self._fail_partition(h.info, h.claim, one_line(exc), type(exc).__name__)
        self._let_go(h)

    def _finish(self, key: str, h: Held) -> None:
        for sink in h.route.sinks:
            sink.commit(self.source.id, as_object(h.info))
        with contextlib.suppress(ClaimLostError):
            self.ledger.complete(h.claim)
        h.partition.close()
        self.leases.drop(h.claim)
        del self._held[key]
        log.info("finished %s at record %d", key, h.position)
        with self._lock:
            self.result.objects += 1
        # Its key may hold a new version now (a rotated file's successor), or its content a
        # new key that waited for this claim to end: list again at once.
        self._discover_now.set()

    def _shutdown(self) -> None:
        # Hand over what was read, let the delivery threads deliver what they can (a sink
        # that is down gives up at once when stopping), then give every claim back.
        for h in list(self._held.values()):
            if not h.abandoned:
                self._hand_over_due(h, force=True)
        self.lanes.finish()
        for h in list(self._held.values()):
            h.partition.close()
            self.leases.drop(h.claim)
            with contextlib.suppress(ClaimLostError):
                self.ledger.release(h.claim)
        self._held.clear()
        counted = [{"retries": self.deliverer.retries}, *(d.counters for d in self._decoders)]
        close_result(self.result, self.router.sinks(), counted)
