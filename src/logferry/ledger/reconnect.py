"""Riding out a ledger server that went away: which errors mean that, and how long to wait.

A runner whose database restarts, fails over or is cut off by the network for a few seconds
should carry on where it was, not fail every object it holds. The PostgreSQL ledger retries
a transaction whose connection was lost, with backoff, for a bounded time; past that it
raises a :class:`LedgerError` that says how long the server has been unreachable.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from logferry.ledger.base import LedgerError

log = logging.getLogger("logferry")

#: Longest wait for a pooled connection in one attempt (seconds).
CONNECT_WAIT = 10.0

# SQLSTATEs of a connection that is gone or a server that is going or coming back:
# class 08 (connection exception), admin/crash shutdown, cannot connect now.
_LOST_STATES = ("57P01", "57P02", "57P03")


def connection_lost(exc: psycopg.Error) -> bool:
    """True when ``exc`` says the connection or the server went away (worth retrying)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    # A connection that broke mid-statement has no SQLSTATE: the server never answered.
    return state is None or state.startswith("08") or state in _LOST_STATES


class Outage:
    """Shared by a ledger's threads: when the server was first missed, and the backoff."""

    def __init__(self, display: str) -> None:
        self.display = display
        self._since: float | None = None
        self._lock = threading.Lock()

    def connect_wait(self, patience: float) -> float:
        """How long the next attempt may wait for a connection: within what is left."""
        since = self._since
        if since is None:
            return max(1.0, min(CONNECT_WAIT, patience))
        return max(1.0, min(CONNECT_WAIT, since + patience - time.monotonic()))

    def over(self) -> None:
        """A transaction went through: any outage has ended."""
        if self._since is not None:
            with self._lock:
                if self._since is not None:
                    log.warning(
                        "ledger %s reachable again after %.1f s",
                        self.display,
                        time.monotonic() - self._since,
                    )
                    self._since = None

    def wait(self, reason: str, patience: float, attempt: int, began: float) -> None:
        """Sleep before the next attempt, or raise LedgerError once ``patience`` is spent.

        ``began`` is when the failed attempt started (``time.monotonic()``): the outage is
        counted from there, so waiting for a connection counts against ``patience`` too.
        """
        now = time.monotonic()
        with self._lock:
            if self._since is None:
                self._since = began
                if patience > 0:
                    log.warning(
                        "ledger %s unreachable (%s): retrying for up to %g s",
                        self.display,
                        reason,
                        patience,
                    )
            since = self._since
        left = since + patience - now
        if left <= 0:
            raise LedgerError(
                f"cannot reach ledger {self.display} ({reason})"
                + (f" for {now - since:.0f} s" if patience > 0 else "")
                + ": check the server and the network; shipping resumes from the last "
                "checkpoint"
            )
        time.sleep(min(left, 0.1 * 2 ** min(attempt - 1, 6), 5.0))
