"""The cursor of a CloudWatch log stream (no AWS client needed to read or write one)."""

from __future__ import annotations

from dataclasses import dataclass

from logferry.sources.stream import Cursor


@dataclass(frozen=True, slots=True)
class StreamCursor(Cursor):
    """Where a stream was read up to: what the daemon state and the ledger keep.

    ``token`` is the forward token after the last event read, valid together with the
    ``start`` time it was issued under (moto counts tokens inside that window). ``last_ts``
    and ``at_last_ts`` (events read at that millisecond) let a reader resume exactly when
    CloudWatch refuses an expired token.
    """

    token: str | None = None
    start: int | None = None
    last_ts: int | None = None
    at_last_ts: int = 0
