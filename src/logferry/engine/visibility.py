"""The visibility keeper: keeps the queue messages a worker is handling invisible to others.

A message received from a work queue is hidden from the other consumers for the queue's
visibility timeout (SQS) or ack wait (JetStream). Shipping a big object can take longer;
the keeper extends every held message a third of the way into its timeout, so no second
worker is handed a message that is still being worked on. An extension that fails is
tried again after a doubling delay (from :data:`RETRY_FIRST` seconds up to the third of the
timeout), and said once per message at WARNING, the retries at DEBUG.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from logferry.engine.results import one_line
from logferry.queues.base import Message, WorkQueue

log = logging.getLogger("logferry")

#: Seconds before the first retry of an extension that failed; doubled at each failure.
RETRY_FIRST = 1.0


@dataclass(slots=True)
class _Held:
    queue: WorkQueue
    message: Message
    timeout: float
    due: float
    #: Extensions that failed in a row (0: the last one worked).
    failures: int = 0
    #: A failure of this message was logged at WARNING already.
    warned: bool = False


class VisibilityKeeper:
    """Extends held messages every third of their timeout, in a background thread."""

    def __init__(self, tick: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._held: dict[int, _Held] = {}
        self._lock = threading.Lock()
        # Held while extending, so that ``drop`` waits: a message is never extended after
        # it was acknowledged (its receipt handle would be stale).
        self._extending = threading.Lock()
        self._stop = threading.Event()
        self._tick = tick
        self._clock = clock
        self._thread: threading.Thread | None = None

    def hold(self, queue: WorkQueue, message: Message, timeout: float) -> None:
        """Keep ``message`` invisible, ``timeout`` seconds at a time, until :meth:`drop`."""
        with self._lock:
            self._held[id(message)] = _Held(queue, message, timeout, self._clock() + timeout / 3)

    def drop(self, message: Message) -> None:
        """Stop extending ``message`` (it is being settled): no extension follows this call."""
        with self._extending, self._lock:
            self._held.pop(id(message), None)

    def start(self) -> VisibilityKeeper:
        """Start extending in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="logferry-visibility", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (after every message was settled)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def extend_due(self) -> None:
        """One round: extend the messages whose third of the timeout has passed."""
        with self._extending:
            now = self._clock()
            with self._lock:
                due = [h for h in self._held.values() if h.due <= now]
            for held in due:
                self._extend(held)

    def _extend(self, held: _Held) -> None:
        try:
            held.queue.extend(held.message, held.timeout)
        except Exception as exc:  # tried again soon, not every tick; the message may come back
            retry_in = min(RETRY_FIRST * 2**held.failures, held.timeout / 3)
            held.failures += 1
            held.due = self._clock() + retry_in
            level = logging.DEBUG if held.warned else logging.WARNING
            held.warned = True
            log.log(
                level, "extending message %s failed: %s; trying again in %g s",
                held.message.id, one_line(exc), retry_in,
            )  # fmt: skip
            return
        held.failures = 0
        held.due = self._clock() + held.timeout / 3
        log.debug("extended message %s by %g s", held.message.id, held.timeout)

    def _run(self) -> None:
        while not self._stop.wait(self._tick):
            self.extend_due()
