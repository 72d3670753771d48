"""Delivery lanes of followed partitions: one thread per sink, and the checkpoints.

Each sink has a delivery thread that writes that sink's batches in order, one at a time,
through the :class:`Deliverer`. After each batch it moves the partition's checkpoint to
what every sink of the partition acknowledged (invariant 1); a batch refused for good is
kept as a dead letter first, so the cursor never moves past records that exist nowhere else.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from logferry.engine.buffer import Held, Lane
from logferry.engine.delivery import Deliverer, Refused, RetryLater
from logferry.engine.errorqueue import ErrorQueue, sink_reason
from logferry.engine.results import Progress, ShipResult, one_line
from logferry.ledger.base import Claim, ClaimLostError, Ledger
from logferry.records import Batch
from logferry.sinks.base import Sink
from logferry.sources.stream import Cursor

log = logging.getLogger("logferry")


@dataclass
class Job:
    """One batch for a sink's delivery thread."""

    held: Held
    lane: Lane
    batch: Batch


class Lanes:
    """The delivery threads of one stream run, and the partition checkpoints they make."""

    def __init__(
        self,
        sinks: list[Sink],
        ledger: Ledger,
        lease_seconds: float,
        deliverer: Deliverer,
        errors: ErrorQueue,
        result: ShipResult,
        progress: Progress,
        lock: threading.Lock,
        *,
        on_lost: Callable[[Claim], None],
        on_held: Callable[[Held], None],
    ) -> None:
        self.ledger = ledger
        self.lease_seconds = lease_seconds
        self.deliverer = deliverer
        self.errors = errors
        self.result = result
        self.progress = progress
        #: The runner's lock: buffers and lanes change under it.
        self.lock = lock
        self.on_lost = on_lost
        self.on_held = on_held
        self._queues: dict[int, queue.Queue[Job | None]] = {id(s): queue.Queue() for s in sinks}
        self._threads: list[threading.Thread] = []
        #: Set when the run ends by an exception: delivery threads stop retrying at once.
        self.closing = threading.Event()
        #: Set after each batch: the reader may have room again.
        self.delivered = threading.Event()

    def start(self) -> None:
        """Start one delivery thread per sink."""
        for i, jobs in enumerate(self._queues.values()):
            thread = threading.Thread(
                target=self._flusher, args=(jobs,), name=f"logferry-flush-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def put(self, job: Job) -> None:
        """Queue ``job`` for its sink's thread."""
        self._queues[id(job.lane.sink)].put(job)

    def finish(self) -> None:
        """Deliver what is queued (a sink that is down gives up when stopping), then end."""
        for jobs in self._queues.values():
            jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _flusher(self, jobs: queue.Queue[Job | None]) -> None:
        while (job := jobs.get()) is not None:
            try:
                self._deliver(job)
            except Exception as exc:  # never let a delivery thread die: the stream would stall
                log.error("%s: delivery failed: %s", job.held.info.key, one_line(exc))
                job.held.abandoned = True
            finally:
                with self.lock:
                    job.lane.inflight -= 1
                self.delivered.set()

    def _deliver(self, job: Job) -> None:
        """Deliver one batch to one sink, then checkpoint what every sink now has."""
        h, lane, batch = job.held, job.lane, job.batch
        if h.abandoned:
            return  # an earlier batch was not delivered: this one must not be checkpointed
        outcome = self.deliverer.deliver(
            lane.sink, batch, lambda: h.abandoned or self.closing.is_set()
        )
        if isinstance(outcome, RetryLater):
            h.abandoned = True  # the next run (or the next take) resumes at the checkpoint
            if not outcome.stopped and not self.deliverer.stop.is_set():
                self.on_held(h)
                reason = sink_reason(lane.sink.name, outcome.reason)
                self.progress.message(
                    f"held {h.info.key}: {reason}; the next run resumes at the checkpoint"
                )
            return
        if isinstance(outcome, Refused):
            # Kept durably with its records before the cursor moves past them.
            self.errors.refused(batch, h.info.version, lane.sink.name, outcome)
        with self.lock:
            lane.acked = batch.end
        log.info("shipped %s: records %d-%d to %s", h.info.key, batch.start, batch.end,
                 lane.sink.name)  # fmt: skip
        self.checkpoint(h)

    def store(self, h: Held, target: int, nbytes: int, cursor: Cursor | None) -> bool:
        """Checkpoint ``h`` at ``target`` (and ``cursor``); False when the claim was lost."""
        try:
            self.ledger.checkpoint(
                h.claim,
                target,
                nbytes,
                self.lease_seconds,
                cursor.encode() if cursor is not None else None,
            )
        except ClaimLostError:
            self.on_lost(h.claim)
            return False
        return True

    def checkpoint(self, h: Held) -> None:
        """Move the partition's checkpoint to what all its sinks acknowledged."""
        with h.checkpointing:
            with self.lock:
                target = min(lane.acked for lane in h.lanes)
                done = h.acknowledged(target)
                if done is None:
                    return
            nbytes = sum(run.nbytes for run in done)
            if not self.store(h, target, nbytes, done[-1].cursor):
                return
            with self.lock:
                self.result.lines += target - done[0].start
                self.result.bytes += nbytes
                if h.abandoned or not h.runs or h.runs[0] is not done[0]:
                    return  # dropped meanwhile: its buffer is gone already
                h.forget(done, target, nbytes)
                # A cursor that moved past nothing after the last run was read: keep it too.
                later = h.cursor if not h.runs and h.base == h.position else None
            if later is not None and later != done[-1].cursor:
                self.store(h, target, 0, later)
            self.progress.advanced(target - done[0].start, nbytes)
