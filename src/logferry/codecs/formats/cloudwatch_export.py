"""``cloudwatch-export``: CloudWatch Logs exported to S3 (``aws logs create-export-task``).

Objects are ``<prefix>/<task-id>/<log-stream>/000000.gz``; every line is the event's
ISO 8601 timestamp, a space, then the message. The message is shipped, stamped with that time.
A line without the timestamp (the continuation of a multi-line message, or anything else) is
shipped whole, stamped with LastModified, and counted as ``malformed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.framing import iter_lines
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

#: The exact shape CloudWatch writes ("2024-01-02T03:04:05.678Z "); other ISO shapes are
#: accepted too, through the slower general pattern.
EXPORT_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
_GENERAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? ")
_CACHE_SIZE = 8192


class CloudWatchExportFormat(Format):
    """One record per line: the message after the timestamp; no fields."""

    name = "cloudwatch-export"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk."""
        default = ctx.last_modified_ms
        seconds: dict[str, int | None] = {}  # "YYYY-MM-DDTHH:MM:SS" → ms
        general = _GENERAL.match
        for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
            messages: list[str] = []
            timestamps: list[int] = []
            malformed = 0
            for line in lines:
                # Fast path for the shape CloudWatch writes, checked by position, not regex.
                if len(line) > 24 and line[24] == " " and line[23] == "Z" and line[19] == ".":
                    head = line[:19]
                    base = seconds.get(head)
                    if base is None and head not in seconds:
                        if len(seconds) >= _CACHE_SIZE:
                            seconds.clear()
                        base = seconds[head] = (
                            parse_timestamp(head) if general(line) is not None else None
                        )
                    millis = line[20:23]
                    if base is not None and millis.isdigit():
                        messages.append(line[25:])
                        timestamps.append(base + int(millis))
                        continue
                else:
                    m = general(line)
                    if m is not None:
                        ms = parse_timestamp(line[: m.end() - 1])
                        if ms is not None:
                            messages.append(line[m.end() :])
                            timestamps.append(ms)
                            continue
                malformed += 1
                messages.append(line)
                timestamps.append(default)
            if malformed:
                ctx.counters["malformed"] += malformed
            yield Chunk(messages, timestamps, None)
