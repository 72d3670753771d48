"""The lease keeper: renews every claim a run holds, and says which ones were lost."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from logferry.engine.metrics import METRICS
from logferry.engine.results import one_line
from logferry.ledger.base import Claim, Ledger

log = logging.getLogger("logferry")


class LeaseKeeper:
    """Renews held claims every third of the lease; calls ``on_lost`` for claims taken over.

    A claim is lost when this process paused past its lease and another runner took the
    row: its holder must stop shipping it at once (invariant 4), not at its next checkpoint.
    """

    def __init__(
        self, ledger: Ledger, lease_seconds: float, on_lost: Callable[[Claim], None]
    ) -> None:
        self.ledger = ledger
        self.lease_seconds = lease_seconds
        self.on_lost = on_lost
        self._claims: dict[tuple[str, str, str], Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claim: Claim) -> None:
        """Keep ``claim`` renewed until :meth:`drop`."""
        with self._lock:
            if (claim.source, claim.key, claim.etag) not in self._claims:
                METRICS.claims.labels(claim.source).inc()
            self._claims[(claim.source, claim.key, claim.etag)] = claim

    def drop(self, claim: Claim) -> None:
        """Stop renewing ``claim`` (completed, failed or released)."""
        with self._lock:
            if self._claims.pop((claim.source, claim.key, claim.etag), None) is not None:
                METRICS.claims.labels(claim.source).dec()

    def start(self) -> LeaseKeeper:
        """Start renewing in a background thread."""
        self._thread = threading.Thread(target=self._run, name="logferry-lease", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing (after the last delivery of the run)."""
        self._stop.set()

    def renew_now(self) -> None:
        """One round of renewal: extend every held lease, report the lost ones."""
        with self._lock:
            claims = list(self._claims.values())
        if not claims:
            return
        try:
            lost = self.ledger.renew(claims, self.lease_seconds)
        except Exception as exc:  # a missed heartbeat is retried next round
            log.warning("lease renewal failed: %s", one_line(exc))
            return
        for claim in lost:
            self.drop(claim)
            self.on_lost(claim)

    def _run(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            self.renew_now()
