"""The worker: competing consumers of object notifications from work queues.

Each lane is a queue with its own consumer threads and visibility timeout: the main lane
(``logferry worker --queue``) and optional lanes for big objects, which the main lane's
consumers forward there so one huge object never holds up the small ones. Every thread
receives one message at a time and hands it to the :class:`MessageHandler`, which ships its
objects and settles it; a :class:`VisibilityKeeper` keeps the messages in hand invisible
to the other consumers meanwhile. All threads share one ledger and one owner id.

Shutdown: receiving stops at once; the messages in hand get ``shutdown_timeout`` seconds
to finish, then their runners stop (releasing their claims) and they are given back.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logferry.engine.messages import MessageHandler, Settings, settle_quietly
from logferry.engine.metrics import METRICS
from logferry.engine.results import Progress, one_line
from logferry.engine.visibility import VisibilityKeeper
from logferry.errors import ConfigError
from logferry.ledger.base import Ledger, new_owner_id
from logferry.queues.base import Message, WorkQueue

if TYPE_CHECKING:
    from logferry.config import WorkerConfig
    from logferry.pipeline import SourcePlan

log = logging.getLogger("logferry")

MAIN_LANE = "main"


@dataclass(frozen=True)
class Lane:
    """One queue and how it is consumed; ``min_size`` is what the main lane forwards to it."""

    name: str
    queue: WorkQueue
    concurrency: int
    visibility_timeout: float
    max_deliveries: int
    min_size: int = 0


class WorkerStats:
    """What a worker did, for its summary line and ``--json``; thread-safe."""

    MESSAGES = ("received", "acked", "naked", "dead_lettered", "forwarded")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()
        self._in_flight = 0
        self.last_activity = time.monotonic()
        self.started = time.monotonic()

    def add(self, **counts: int) -> None:
        """Add to the object counters (objects, lines, bytes, skipped, forwarded)."""
        with self._lock:
            self._counts.update(counts)

    def add_message(self, lane: str, outcome: str) -> None:
        """One message of ``lane`` was received or settled as ``outcome``."""
        METRICS.worker_messages.labels(lane, outcome).inc()
        with self._lock:
            self._counts[f"messages_{outcome}"] += 1
            self.last_activity = time.monotonic()

    def entered(self, lane: str, delta: int) -> None:
        """A message of ``lane`` is now in hand (+1) or settled (-1)."""
        METRICS.worker_in_flight.labels(lane).inc(delta)
        with self._lock:
            self._in_flight += delta
            self.last_activity = time.monotonic()

    @property
    def in_flight(self) -> int:
        """Messages in hand now."""
        with self._lock:
            return self._in_flight

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        with self._lock:
            c = dict(self._counts)
        return {
            "messages": {name: c.get(f"messages_{name}", 0) for name in self.MESSAGES},
            "objects": c.get("objects", 0),
            "lines": c.get("lines", 0),
            "bytes": c.get("bytes", 0),
            "duplicates_skipped": c.get("skipped", 0),
            "objects_forwarded": c.get("forwarded", 0),
            "seconds": round(time.monotonic() - self.started, 3),
        }

    @staticmethod
    def add_up(summaries: list[dict[str, Any]]) -> dict[str, Any]:
        """One summary for workers that ran side by side (``--processes``): counts added
        up, the longest time."""
        total: dict[str, Any] = {
            "messages": dict.fromkeys(WorkerStats.MESSAGES, 0),
            "objects": 0, "lines": 0, "bytes": 0, "duplicates_skipped": 0,
            "objects_forwarded": 0, "seconds": 0.0,
        }  # fmt: skip
        for summary in summaries:
            for name in WorkerStats.MESSAGES:
                total["messages"][name] += int(summary.get("messages", {}).get(name, 0))
            for name in ("objects", "lines", "bytes", "duplicates_skipped", "objects_forwarded"):
                total[name] += int(summary.get(name, 0))
            total["seconds"] = max(total["seconds"], float(summary.get("seconds", 0.0)))
        return total


class Worker:
    """Consumes the lanes' queues with their threads until :meth:`request_stop`."""

    def __init__(
        self,
        ledger: Ledger,
        lanes: list[Lane],
        plan_of: Callable[[str], SourcePlan],
        settings: Settings,
        *,
        stop: threading.Event | None = None,
        progress: Callable[[], Progress] | None = None,
        receive_wait: float = 2.0,
    ) -> None:
        if not lanes or lanes[0].name != MAIN_LANE:
            raise ValueError("the first lane is the main lane")
        self.lanes = lanes
        self.stats = WorkerStats()
        #: Set at the end of the shutdown grace: runners stop and give their claims back.
        self.stop = stop or threading.Event()
        self.receiving = threading.Event()
        self.receiving.set()
        self.owner = new_owner_id()
        self.receive_wait = receive_wait
        self.keeper = VisibilityKeeper()
        self.handler = MessageHandler(
            ledger, plan_of, settings, self.stats, owner=self.owner, stop=self.stop,
            progress=progress, settling=self.keeper.drop,
        )  # fmt: skip

    def request_stop(self) -> None:
        """Stop receiving; the messages in hand finish (see :meth:`run`)."""
        self.receiving.clear()

    def run(self, shutdown_timeout: float = 30.0, idle_exit: float | None = None) -> WorkerStats:
        """Consume until :meth:`request_stop` (or ``idle_exit`` seconds without a message).

        Then wait up to ``shutdown_timeout`` for the messages in hand; those still going
        are stopped, their claims released, and given back to their queues.
        """
        self.keeper.start()
        forward = self.lanes[1:]
        threads = [
            threading.Thread(
                target=self._consume,
                args=(lane, forward if lane.name == MAIN_LANE else []),
                name=f"logferry-{lane.name}-{i}",
            )
            for lane in self.lanes
            for i in range(lane.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            while self.receiving.is_set():
                time.sleep(0.1)
                idle = time.monotonic() - self.stats.last_activity
                if idle_exit is not None and idle >= idle_exit and not self.stats.in_flight:
                    log.info("no message for %g s: stopping", idle_exit)
                    self.request_stop()
        finally:
            self.request_stop()
            deadline = time.monotonic() + shutdown_timeout
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t in threads):
                log.warning("shutdown: giving back the messages still in hand")
                self.stop.set()
            for thread in threads:
                thread.join()
            self.keeper.stop()
        return self.stats

    def _consume(self, lane: Lane, forward: list[Lane]) -> None:
        delay = 1.0
        while self.receiving.is_set():
            try:
                messages = lane.queue.receive(1, self.receive_wait)
            except Exception as exc:
                METRICS.health(f"queue {lane.name}", False, one_line(exc))
                log.warning("receiving from %s failed: %s; again in %g s", lane.queue.name,
                            one_line(exc), delay)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            METRICS.health(f"queue {lane.name}", True)
            delay = 1.0
            for message in messages:
                self._handle(lane, message, forward)

    def _handle(self, lane: Lane, message: Message, forward: list[Lane]) -> None:
        self.stats.add_message(lane.name, "received")
        self.stats.entered(lane.name, +1)
        try:
            if not self.receiving.is_set():
                # Received as the shutdown began: give it back untouched.
                settle_quietly(lane.queue, message)
                self.stats.add_message(lane.name, "naked")
                return
            self.keeper.hold(lane.queue, message, lane.visibility_timeout)
            try:
                self.handler.handle(lane, message, forward)
            except Exception as exc:  # the ledger or the queue failed: it comes back later
                log.error("message %s: %s; giving it back", message.id, one_line(exc))
                self.keeper.drop(message)
                settle_quietly(
                    lane.queue, message, self.handler.settings.backoff(message.deliveries)
                )
                self.stats.add_message(lane.name, "naked")
        finally:
            self.keeper.drop(message)
            self.stats.entered(lane.name, -1)


def _queue_options(**values: object) -> dict[str, object]:
    """Only the options given: the rest come from the queue URL's query or the defaults."""
    return {k: v for k, v in values.items() if v is not None}


def open_lanes(config: WorkerConfig, queue_url: str) -> list[Lane]:
    """Open the main lane's queue and each configured lane's (close them with the lanes)."""
    from logferry.queues.base import open_queue

    lanes: list[Lane] = []
    try:
        main = open_queue(
            queue_url,
            _queue_options(
                visibility_timeout=config.visibility_timeout,
                max_deliveries=config.max_deliveries,
                dead_letter=config.dead_letter,
            ),
        )
        lanes.append(_lane(MAIN_LANE, main, config.concurrency))
        for name, cfg in sorted(config.lanes.items(), key=lambda kv: kv[1].min_size):
            queue = open_queue(
                cfg.queue,
                _queue_options(
                    visibility_timeout=cfg.visibility_timeout or config.visibility_timeout,
                    max_deliveries=cfg.max_deliveries or config.max_deliveries,
                    dead_letter=cfg.dead_letter or config.dead_letter,
                ),
            )
            lanes.append(_lane(name, queue, cfg.concurrency, cfg.min_size))
        _distinct_queues(lanes)
    except BaseException:
        close_lanes(lanes)
        raise
    return lanes


def _distinct_queues(lanes: list[Lane]) -> None:
    """Refuse two lanes on one queue (``--queue`` may name a lane's queue, or the same queue
    written another way): objects forwarded to a lane would come back to the sender."""
    seen: dict[str, str] = {}
    for lane in lanes:
        first = seen.setdefault(lane.queue.identity, lane.name)
        if first != lane.name:
            raise ConfigError(
                f"lanes {first!r} and {lane.name!r} read the same queue "
                f"({lane.queue.name}): every lane needs a queue of its own"
            )


def _lane(name: str, queue: WorkQueue, concurrency: int, min_size: int = 0) -> Lane:
    opts = queue.options
    return Lane(name, queue, concurrency, opts.visibility_timeout, opts.max_deliveries, min_size)


def close_lanes(lanes: list[Lane]) -> None:
    """Close the lanes' queues."""
    for lane in lanes:
        try:
            lane.queue.close()
        except Exception as exc:
            log.warning("closing %s: %s", lane.queue.name, one_line(exc))
