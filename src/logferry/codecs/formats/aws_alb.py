"""``aws-alb``: Elastic Load Balancing access logs (Application and Classic load balancers).

Space-separated fields, some quoted (``"GET http://... HTTP/1.1"``). Only the leading fields
up to the user agent are matched, so fields AWS appends later never break parsing. Classic
load balancer lines are the same without the leading ``type``. The line is shipped as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format, decode_each_line
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
#: type, time (to the second), fraction, elb, client:port, target:port,
#: elb_status_code, target_status_code.
_LINE = re.compile(
    r"(?:(https?|h2|grpcs|wss?) )?"
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z "
    r"(\S+) (\S+) (\S+) \S+ \S+ \S+ (\S+) (\S+) \S+ \S+ "
    rf"{_QUOTED} {_QUOTED}"
)
_CACHE_SIZE = 8192


class AwsAlbFormat(Format):
    """One record per request; ``fields`` holds the load balancer, peers and status codes."""

    name = "aws-alb"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk; unparseable lines are shipped and counted."""
        match = _LINE.match
        seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" → ms, shared by a second's lines

        def parse(line: str) -> tuple[int, dict[str, Any]] | None:
            m = match(line)
            if m is None:
                return None
            kind, second, frac, elb, client, target, elb_status, target_status = m.groups()
            base = seconds.get(second)
            if base is None:
                parsed = parse_timestamp(second)
                if parsed is None:  # a well-shaped but impossible date: 2024-02-30
                    return None
                if len(seconds) >= _CACHE_SIZE:
                    seconds.clear()
                base = seconds[second] = parsed
            record = {
                "elb": elb,
                "client": client,
                "target": target,
                "elb_status_code": elb_status,
                "target_status_code": target_status,
            }
            if kind is not None:
                record["type"] = kind
            return (base + int(frac[1:4].ljust(3, "0")) if frac else base), record

        yield from decode_each_line(chunks, ctx, parse)
