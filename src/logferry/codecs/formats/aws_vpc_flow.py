"""``aws-vpc-flow``: AWS VPC flow logs delivered to S3 as space-separated text.

The first line is a header naming the fields (custom field lists come in any order).
Objects without a header are read with the default version 2 field list.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from logferry.codecs.formats.base import DecodeContext, Format
from logferry.codecs.framing import iter_lines
from logferry.records import Chunk

#: The default (version 2) field list, used when an object has no header line.
DEFAULT_FIELDS: tuple[str, ...] = (
    "version",
    "account-id",
    "interface-id",
    "srcaddr",
    "dstaddr",
    "srcport",
    "dstport",
    "protocol",
    "packets",
    "bytes",
    "start",
    "end",
    "action",
    "log-status",
)

#: Every field AWS documents for flow log records (versions 2 to 5+).
KNOWN_FIELDS = frozenset(
    (
        *DEFAULT_FIELDS,
        "vpc-id",
        "subnet-id",
        "instance-id",
        "tcp-flags",
        "type",
        "pkt-srcaddr",
        "pkt-dstaddr",
        "region",
        "az-id",
        "sublocation-type",
        "sublocation-id",
        "pkt-src-aws-service",
        "pkt-dst-aws-service",
        "flow-direction",
        "traffic-path",
        "ecs-cluster-arn",
        "ecs-cluster-name",
        "ecs-container-instance-arn",
        "ecs-container-instance-id",
        "ecs-container-id",
        "ecs-second-container-id",
        "ecs-service-name",
        "ecs-task-definition-arn",
        "ecs-task-arn",
        "ecs-task-id",
        "reject-reason",
        "resource-id",
    )
)

_FIELD_NAME = re.compile(r"[a-z][a-z0-9-]*")


def is_header(line: str) -> bool:
    """True if ``line`` is a flow log header: field names only, at least one AWS knows."""
    tokens = line.split()
    return (
        bool(tokens)
        and all(_FIELD_NAME.fullmatch(t) for t in tokens)
        and any(t in KNOWN_FIELDS for t in tokens)
    )


class AwsVpcFlowFormat(Format):
    """One record per row; ``fields`` maps header names to the row's strings ("-" kept)."""

    name = "aws-vpc-flow"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk; NODATA/SKIPDATA rows are records too."""
        header: list[str] | None = None
        start = -1
        width = 0
        default = ctx.last_modified_ms
        for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
            if header is None:
                if is_header(lines[0]):
                    header = lines[0].split()
                    lines = lines[1:]
                else:
                    header = list(DEFAULT_FIELDS)
                    ctx.counters["no_header"] += 1
                start = header.index("start") if "start" in header else -1
                width = len(header)
                if not lines:
                    continue
            rows = [line.split() for line in lines]
            fields: list[dict[str, Any]] = [dict(zip(header, row, strict=False)) for row in rows]
            mismatched = sum(1 for row in rows if len(row) != width)
            if mismatched:
                ctx.counters["field_count_mismatch"] += mismatched
            if start < 0:
                timestamps = [default] * len(lines)
            else:
                timestamps = [
                    int(row[start]) * 1000
                    if len(row) > start and row[start].isdecimal()
                    else default
                    for row in rows
                ]
            yield Chunk(lines, timestamps, fields)
