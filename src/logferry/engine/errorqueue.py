"""The error queue: what could not be shipped, with a one-line reason (invariant 3).

Its entries are real: an object (its ledger row, failed, which ``drain`` ships again from
the source) or a record range a sink refused for good (a dead letter holding the records,
which ``drain`` delivers from the ledger, since a stream cannot be read again).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from logferry.engine.delivery import Refused
from logferry.engine.metrics import METRICS
from logferry.engine.results import Failure, ShipResult
from logferry.ledger.base import Claim, ClaimLostError, Ledger
from logferry.records import Batch

log = logging.getLogger("logferry")


def sink_reason(sink: str, reason: str) -> str:
    """``reason`` naming ``sink`` once (HTTP sinks' errors already start with their name)."""
    return reason if reason.startswith(sink) else f"{sink}: {reason}"


class ErrorQueue:
    """Files failures of one run in the ledger and in its result, announcing each once."""

    def __init__(
        self, ledger: Ledger, result: ShipResult, announce: Callable[[str, str], None]
    ) -> None:
        self.ledger = ledger
        self.result = result
        self.announce = announce
        self._lock = threading.Lock()
        self._failures: dict[str, Failure] = {}

    def failed(self, claim: Claim | None, key: str, error: str, error_class: str) -> None:
        """``key`` (an object, a partition) failed: mark its row failed, report it once."""
        if claim is not None:
            with contextlib.suppress(ClaimLostError):  # someone else owns it now
                self.ledger.fail(claim, error, error_class)
        METRICS.failures.labels(self.result.source, error_class).inc()
        self._record(key, error)

    def refused(self, batch: Batch, etag: str, sink: str, outcome: Refused) -> None:
        """A sink refused ``batch`` for good: keep its records as a dead letter."""
        error = sink_reason(sink, outcome.reason)
        letter = self.ledger.add_dead_letter(batch, etag, sink, outcome.error_class, error)
        with self._lock:
            self.result.dead_letters += len(batch)
        METRICS.failures.labels(self.result.source, outcome.error_class).inc()
        log.info("dead letter D%d: %s records %d-%d", letter, batch.key, batch.start, batch.end)
        self._record(f"{batch.key}#{batch.start}-{batch.end}", error)

    def succeeded(self, key: str) -> None:
        """``key`` shipped after all (a retry in this run): it is no longer a failure."""
        with self._lock:
            if self._failures.pop(key, None) is not None:
                self.result.failed = list(self._failures.values())

    def _record(self, key: str, error: str) -> None:
        log.info("failed %s: %s", key, error)
        with self._lock:
            self._failures[key] = Failure(key, error)
            self.result.failed = list(self._failures.values())
        self.announce(key, error)
