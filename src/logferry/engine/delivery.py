"""Delivering a batch to a sink: the one retry layer, and its typed outcome.

A sink's ``write`` makes one attempt and raises a classified error. :class:`Deliverer`
decides what that means for the batch: it retries transient failures with jittered,
capped backoff (honouring a server's ``Retry-After``) and answers with one outcome:

- :class:`Delivered`: the sink acknowledged every record;
- :class:`RetryLater`: still failing when the policy's time ran out (or the run stopped);
  nothing is lost, the records stay unacknowledged and the next attempt resumes there;
- :class:`Refused`: the sink will never take these records (a 400, a handler's exception);
  they go to the error queue as they are.

Runners react to the outcome only; no other layer retries.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from logferry.engine.metrics import METRICS
from logferry.engine.results import one_line
from logferry.errors import RetryableSinkError
from logferry.records import Batch
from logferry.sinks.base import Sink

log = logging.getLogger("logferry")

#: A one-off run gives up on a sink that keeps failing after this long (``--retry-timeout``).
DEFAULT_GIVE_UP_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """Every record of the batch was acknowledged."""

    attempts: int = 1


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Not delivered yet; worth another attempt in ``after`` seconds (nothing was lost)."""

    after: float
    reason: str
    error_class: str
    #: True when the run was stopped while waiting, rather than the policy giving up.
    stopped: bool = False
    #: The last error, for callers that re-raise it.
    error: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Refused:
    """The sink refused the batch for good; retrying the same records cannot help."""

    reason: str
    error_class: str
    #: The sink's error, for callers that re-raise it.
    error: BaseException | None = field(default=None, compare=False, repr=False)


Outcome = Delivered | RetryLater | Refused


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep retrying a transient failure, and how to space the attempts."""

    #: Seconds after the first failure to give up with :class:`RetryLater` (None: never).
    give_up_after: float | None = DEFAULT_GIVE_UP_AFTER
    #: Attempts at most (None: as many as ``give_up_after`` allows).
    max_attempts: int | None = None
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 300.0

    def backoff(self, retry: int) -> float:
        """Full-jitter delay before retry number ``retry`` (0-based)."""
        return random.uniform(self.base / 2, min(self.cap, self.base * 2.0 ** min(retry, 30)))

    def delay(self, retry: int, retry_after: float | None) -> float:
        """The server's ``Retry-After`` when it sent one, else the jittered backoff."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return self.backoff(retry)


class Deliverer:
    """Writes batches to sinks under one :class:`RetryPolicy`; see the module docstring.

    ``stop`` ends retry waits at once (shutdown); ``cancelled`` is asked between attempts
    (a partition given up meanwhile).
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        stop: threading.Event | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.stop = stop or threading.Event()
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retries = 0

    def deliver(
        self, sink: Sink, batch: Batch, cancelled: Callable[[], bool] = lambda: False
    ) -> Outcome:
        """Write ``batch`` to ``sink`` until it is acknowledged, refused, or time runs out."""
        began = time.monotonic()
        outcome = self._deliver(sink, batch, cancelled)
        METRICS.delivery.labels(sink.name).observe(time.monotonic() - began)
        kind = {Delivered: "delivered", RetryLater: "retry_later", Refused: "refused"}
        METRICS.batches.labels(batch.source, sink.name, kind[type(outcome)]).inc()
        if isinstance(outcome, Delivered):
            METRICS.records.labels(batch.source, sink.name).inc(len(batch))
            METRICS.bytes.labels(batch.source, sink.name).inc(batch.nbytes)
        if not isinstance(outcome, RetryLater):  # a refusal is an answer: the sink is there
            METRICS.health(sink.name, True)
        return outcome

    def _deliver(self, sink: Sink, batch: Batch, cancelled: Callable[[], bool]) -> Outcome:
        policy = self.policy
        first_failure: float | None = None
        slept = 0.0  # what the waits asked for (counts when ``sleep`` is replaced, in tests)
        attempt = 0
        while True:
            attempt += 1
            try:
                if id(sink) not in batch.prepared:
                    sink.prepare(batch)
                sink.write(batch)
                return Delivered(attempt)
            except RetryableSinkError as exc:
                if self.stop.is_set():  # stopping (or the sink stopped the run): no retry
                    return RetryLater(0.0, f"{one_line(exc)} (stopped)", type(exc).__name__,
                                      stopped=True, error=exc)  # fmt: skip
                # What a sink left prepared is what it still has to send (acknowledged
                # requests are gone from it), so the next attempt sends only the rest.
                now = time.monotonic()
                first_failure = first_failure or now
                delay = policy.delay(attempt - 1, exc.retry_after)
                reason = one_line(exc)
                waited = max(now - first_failure, slept)
                METRICS.health(sink.name, False, reason)
                out_of_time = (
                    policy.give_up_after is not None and waited + delay > policy.give_up_after
                )
                if out_of_time or (policy.max_attempts and attempt >= policy.max_attempts):
                    log.warning("%s: %s: gave up after %d attempts: %s", batch.key, sink.name,
                                attempt, reason)  # fmt: skip
                    return RetryLater(
                        delay,
                        f"{reason} (gave up after {attempt} attempts in {waited:.0f} s)",
                        type(exc).__name__,
                        error=exc,
                    )
                # Warnings at the 1st, 2nd, 4th, 8th… attempt; -v tells every one.
                level = logging.WARNING if attempt & (attempt - 1) == 0 else logging.INFO
                log.log(level, "%s: %s; retrying in %.1f s (attempt %d)", batch.key,
                        reason, delay, attempt)  # fmt: skip
                with self._lock:
                    self.retries += 1
                METRICS.retries.labels(sink.name).inc()
                METRICS.health(sink.name, False, reason)
                slept += delay
                if self._wait(delay, cancelled):
                    return RetryLater(0.0, f"{reason} (stopped while retrying)",
                                      type(exc).__name__, stopped=True, error=exc)  # fmt: skip
            except Exception as exc:
                batch.prepared.pop(id(sink), None)
                log.info("%s: %s refused records %d-%d: %s", batch.key, sink.name, batch.start,
                         batch.end, one_line(exc))  # fmt: skip
                return Refused(one_line(exc), type(exc).__name__, error=exc)

    def _wait(self, seconds: float, cancelled: Callable[[], bool]) -> bool:
        """Sleep ``seconds``; True when the run stopped or the work was cancelled meanwhile."""
        if self._sleep is not None:
            self._sleep(seconds)
            return self.stop.is_set() or cancelled()
        deadline = time.monotonic() + seconds
        while not (self.stop.is_set() or cancelled()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.stop.wait(min(left, 0.1))
        return True
