"""``api-request``: API request lines as the stats generator writes them.

``YYYY-mm-dd HH:MM:SS CUSTOMER PATH STATUS DURATION``, e.g.
``2026-11-01 12:00:03 cust_7 /api/v1/orders 200 0.084213``: a UTC time to the second, the
customer id, the request path, the HTTP status and the duration in seconds. The chunk's
``columns`` hold ``customer_id``, ``request_path``, ``status_code`` (int), ``duration``
(float, seconds) and ``success`` (200 <= status < 400). Lines that do not parse are shipped
as written, counted in ``counters["malformed"]``, and carry their reason in the ``_malformed``
column: the stream runner files each in the error queue with its file and record number.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.framing import block_lines, iter_line_blocks
from logferry.records import MALFORMED_KEY, Chunk

FIELDS = ("customer_id", "request_path", "status_code", "duration", "success")

_DATE = re.compile(r"(\d{4})-(\d\d)-(\d\d)")
_TIME = re.compile(r"(\d\d):(\d\d):(\d\d)")
_WIDTH = 6  # date, time, customer, path, status, duration
_CACHE_SIZE = 4096
_INF = float("inf")
# The stamp repeats for every line of a second: parsing it once per second is the fast path.
_seconds: dict[tuple[str, str], int | None] = {}


def _stamp_ms(date: str, time: str) -> int | None:
    """UTC epoch ms of ``YYYY-mm-dd`` and ``HH:MM:SS``, or None when not a valid time."""
    d = _DATE.fullmatch(date)
    t = _TIME.fullmatch(time)
    if d is None or t is None:
        return None
    try:
        y, mo, da = map(int, d.groups())
        h, mi, se = map(int, t.groups())
        dt = datetime(y, mo, da, h, mi, se, tzinfo=UTC)
    except ValueError:
        return None
    return int(dt.timestamp()) * 1000


def _stamps(keys: list[tuple[str, str]]) -> list[int | None]:
    """Timestamps of ``(date, time)`` pairs through the per-second cache."""
    found = list(map(_seconds.get, keys))
    if None in found:
        if len(_seconds) >= _CACHE_SIZE:
            _seconds.clear()  # cheap bound; the current seconds refill at once
        # Parse each missing second once, not once per line of it in this chunk.
        for key in set(k for k, v in zip(keys, found, strict=True) if v is None):
            _seconds[key] = _stamp_ms(*key)
        found = list(map(_seconds.get, keys))
    return found


class ApiRequestFormat(Format):
    """One record per request line; malformed lines ship raw and are counted."""

    name = "api-request"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk."""
        # Imported here: NumPy costs memory and start-up that other formats need not pay.
        # Without NumPy (it is optional: logferry[fast]) every block takes the Python path.
        try:
            from logferry.codecs.formats.api_request_fast import parse_block
        except ImportError as exc:
            if exc.name != "numpy":
                raise
            parse_block = _no_fast_path

        for block in iter_line_blocks(chunks, ctx.options.max_line_bytes, ctx.counters):
            parsed = parse_block(block)
            if parsed is not None:
                lines, timestamps, columns = parsed
                yield Chunk(lines, timestamps.tolist(), None, columns)
                continue
            lines = block_lines(block)
            if not lines:
                continue
            chunk = _decode_columns(lines)
            if chunk is None:
                chunk = _decode_lines(lines, ctx)
            yield chunk


def _no_fast_path(block: bytes) -> None:
    """Stands in for the NumPy parser when NumPy is not installed: no block is taken."""
    return None


def _decode_columns(lines: list[str]) -> Chunk | None:
    """Fast path: the whole chunk well formed, decoded column by column; else None."""
    tokens = "\n".join(lines).split()
    if len(tokens) != _WIDTH * len(lines):
        return None
    try:
        statuses = list(map(int, tokens[4::_WIDTH]))
        durations = list(map(float, tokens[5::_WIDTH]))
    except ValueError:
        return None
    # A NaN or infinity makes the sum non-finite, whatever min() makes of NaN.
    if (
        min(statuses) < 100
        or max(statuses) > 599
        or min(durations) < 0.0
        or not -_INF < sum(durations) < _INF
    ):
        return None
    timestamps = _stamps(list(zip(tokens[0::_WIDTH], tokens[1::_WIDTH], strict=True)))
    if None in timestamps:
        return None
    # Columns, not a dict per line: sinks that store fields (DuckDB, InfluxDB) take them as is.
    columns: dict[str, list[Any]] = {
        "customer_id": tokens[2::_WIDTH],
        "request_path": tokens[3::_WIDTH],
        "status_code": statuses,
        "duration": durations,
        "success": [200 <= code < 400 for code in statuses],
    }
    return Chunk(lines, timestamps, None, columns)  # type: ignore[arg-type]


def _decode_lines(lines: list[str], ctx: DecodeContext) -> Chunk:
    """Slow path for a chunk with malformed lines: line by line, counting the bad ones."""
    default = ctx.last_modified_ms
    timestamps: list[int] = []
    columns = {name: list[Any]() for name in (*FIELDS, MALFORMED_KEY)}
    malformed = 0
    for line in lines:
        parts = line.split()
        reason = malformed_reason(line)
        if reason is None:
            date, time, customer, path, status, duration = parts
            code = int(status)
            timestamps.append(_stamps([(date, time)])[0] or default)
            values: tuple[Any, ...] = (
                customer,
                path,
                code,
                float(duration),
                200 <= code < 400,
                None,
            )
        else:
            malformed += 1
            timestamps.append(default)
            values = (None, None, None, None, None, reason)
        for column, value in zip(columns.values(), values, strict=True):
            column.append(value)
    ctx.counters["malformed"] += malformed
    return Chunk(lines, timestamps, None, dict(columns))


def malformed_reason(line: str) -> str | None:
    """Why ``line`` is not an api-request line (one line, for the error queue); None if it is."""
    parts = line.split()
    if len(parts) != _WIDTH:
        return f"expected 6 space-separated fields, found {len(parts)}"
    date, time, _customer, _path, status, duration = parts
    if _stamp_ms(date, time) is None:
        return f"{date} {time!s} is not a valid 'YYYY-mm-dd HH:MM:SS' time"
    try:
        code = int(status)
    except ValueError:
        code = 0
    if not 100 <= code <= 599:
        return f"status {status!r} is not an HTTP status code (100-599)"
    try:
        seconds_taken = float(duration)
    except ValueError:
        seconds_taken = -1.0
    # NaN fails both comparisons; so do negative and infinite durations.
    if not 0.0 <= seconds_taken < _INF:
        return f"duration {duration!r} is not a non-negative number of seconds"
    return None
