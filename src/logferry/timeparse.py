"""Times as people type them: ``5m``, ``2h ago``, ``1d``, ISO 8601 or epoch; UTC epoch ms out."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from logferry.errors import ConfigError

_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)(?:\s+ago)?\s*$", re.IGNORECASE)
# Epoch values above this are milliseconds (1e11 s is in the year 5138).
_MS_THRESHOLD = 100_000_000_000


def parse_time(text: str, *, now_ms: int | None = None) -> int:
    """Parse a point in time into UTC epoch milliseconds; raise ConfigError naming the forms."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    value = text.strip()
    if value.lower() == "now":
        return now
    if re.fullmatch(r"\d+(\.\d+)?", value):
        number = float(value)
        return int(number if number >= _MS_THRESHOLD else number * 1000)
    match = _RELATIVE.match(value)
    if match and match.group(2).lower() in _UNITS:
        return now - int(float(match.group(1)) * _UNITS[match.group(2).lower()] * 1000)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}: use 5m, 2h ago, 1d, ISO 8601 "
            "(2024-05-01T12:00:00Z) or epoch seconds/milliseconds"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # times without a zone are UTC, like the events
    return int(parsed.timestamp() * 1000)


def format_ms(ms: int | None) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds (``-`` for none)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
