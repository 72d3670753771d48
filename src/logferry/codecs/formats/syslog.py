"""``syslog``: RFC 3164 (BSD) and RFC 5424 lines, as syslog daemons write them to files.

RFC 3164 stamps (``Mmm dd hh:mm:ss``) have no year and no zone: the year is the object's
LastModified year (the previous one if that puts the line more than a day after LastModified,
which handles December lines written in January) and the zone is ``options.syslog_timezone``.
RFC 3339 stamps (RFC 5424, rsyslog's high-precision file format) carry their own offset.
The line is shipped as written; ``fields`` holds ``host``, ``app`` and ``level`` (severity).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from logferry.codecs.formats.base import DecodeContext, Format, decode_each_line
from logferry.codecs.timestamps import parse_timestamp
from logferry.errors import ConfigError
from logferry.records import Chunk

#: Severity names by the low three bits of PRI, as Mezmo and syslog(3) spell them.
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_MONTH = "(?:" + "|".join(_MONTHS) + ")"
_TAG = r"(?: ([^\s:\[\]]+)(?:\[[^\]\s]*\])?:)?"  # "app[pid]:", "postfix/smtpd[1]:", "kernel:"
#: Groups: RFC 5424 pri, timestamp, host, app; else pri, BSD stamp, its fraction, RFC 3339
#: stamp, host, app. Only the prefix is matched: the message is never looked at.
_LINE = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) \S+ \S+ (?:-|\[)"
    r"|(?:<(\d{1,3})>)?"
    rf"(?:({_MONTH} [ \d]\d \d\d:\d\d:\d\d)(\.\d+)?"
    r"|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)))"
    rf" (\S+){_TAG}"
)
_CACHE_SIZE = 4096
_DAY_MS = 86_400_000
_BAD: dict[str, Any] = {"malformed": True}  # cache marker for a PRI above 191; never shipped


class SyslogFormat(Format):
    """RFC 3164 and RFC 5424 lines; lines that are neither are shipped raw and counted."""

    name = "syslog"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk."""
        zone = _zone(ctx.options.syslog_timezone)
        default = ctx.last_modified_ms
        bsd = _BsdClock(zone, default)
        match = _LINE.match
        stamps: dict[str, int | None] = {}  # "Mmm dd hh:mm:ss" → ms: repeats every line
        kinds: dict[tuple[str | None, str | None, str | None], dict[str, Any]] = {}

        def parse(line: str) -> tuple[int, dict[str, Any]] | None:
            m = match(line)
            if m is None:
                return None
            pri5, ts5, host5, app5, pri, stamp, frac, iso, host, app = m.groups()
            if pri5 is not None:
                pri = pri5
                host = None if host5 == "-" else host5
                app = None if app5 == "-" else app5
                iso = None if ts5 == "-" else ts5
            key = (pri, host, app)
            kind = kinds.get(key)
            if kind is None:
                if len(kinds) >= _CACHE_SIZE:
                    kinds.clear()
                kind = kinds[key] = _fields(pri, host, app)
            ms: int | None
            if stamp is not None:
                ms = stamps.get(stamp)
                if ms is None and stamp not in stamps:
                    if len(stamps) >= _CACHE_SIZE:
                        stamps.clear()
                    ms = stamps[stamp] = bsd.to_ms(stamp)
                if ms is not None and frac:
                    ms += int(frac[1:4].ljust(3, "0"))
            elif iso is not None:
                ms = parse_timestamp(iso)
            else:
                ms = default  # RFC 5424 NILVALUE: the sender did not know the time
            if ms is None or kind is _BAD:
                return None
            return ms, kind

        yield from decode_each_line(chunks, ctx, parse)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown syslog_timezone {name!r}; use an IANA zone name such as "
            "'UTC' or 'Europe/Berlin'"
        ) from None


def _fields(pri: str | None, host: str | None, app: str | None) -> dict[str, Any]:
    """The shared (never mutated) fields dict of one host/app/priority combination."""
    out: dict[str, Any] = {}
    if host is not None:
        out["host"] = host
    if app is not None:
        out["app"] = app
    if pri is not None:
        value = int(pri)
        if value > 191:  # facility 23 is the last one
            return _BAD
        out["level"] = SEVERITIES[value & 7]
    return out


class _BsdClock:
    """Turns year-less RFC 3164 stamps into UTC ms, relative to the object's LastModified."""

    def __init__(self, zone: ZoneInfo, last_modified_ms: int) -> None:
        self._zone = zone
        self._year = datetime.fromtimestamp(last_modified_ms / 1000, zone).year
        self._limit = last_modified_ms + _DAY_MS

    def to_ms(self, stamp: str) -> int | None:
        """UTC ms of ``Mmm dd hh:mm:ss``, or None if no such time exists (``Feb 30``)."""
        month = _MONTHS[stamp[:3]]
        day, hour, minute, second = (int(stamp[i : i + 2]) for i in (4, 7, 10, 13))
        for year in (self._year, self._year - 1):
            try:
                local = datetime(year, month, day, hour, minute, second, tzinfo=self._zone)
            except ValueError:  # Feb 29 of a common year may exist the year before
                continue
            ms = int(local.timestamp()) * 1000
            if ms <= self._limit or year != self._year:
                return ms
        return None
