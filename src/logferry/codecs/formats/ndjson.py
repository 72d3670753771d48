"""``ndjson``: one JSON value per line; the line is shipped as written, not re-serialized."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from logferry.codecs.formats.base import NO_FIELDS, DecodeContext, Format
from logferry.codecs.framing import iter_lines
from logferry.codecs.timestamps import parse_timestamp
from logferry.records import Chunk

#: Shared by every line without a level; never mutated.


class NdjsonFormat(Format):
    """Newline-delimited JSON. Lines that are not JSON are shipped as they are and counted."""

    name = "ndjson"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per decompressed chunk.

        ``fields`` keeps only the line's ``level`` (what the Mezmo sink sends along): a
        parsed object costs several times its line in memory, and batches wait in queues.
        """
        loads = orjson.loads
        json_error = orjson.JSONDecodeError
        names = ctx.options.timestamp_fields
        default = ctx.last_modified_ms
        for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
            timestamps: list[int] = []
            fields: list[dict[str, Any]] = []
            not_json = not_object = 0
            for line in lines:
                try:
                    value = loads(line)
                except json_error:
                    not_json += 1
                    timestamps.append(default)
                    fields.append(NO_FIELDS)
                    continue
                if type(value) is not dict:
                    not_object += 1
                    timestamps.append(default)
                    fields.append(NO_FIELDS)
                    continue
                ts = default
                # Inlined rather than a helper call: this loop runs once per line.
                for name in names:
                    raw = value.get(name)
                    if raw is not None and raw != "":
                        parsed = parse_timestamp(raw)
                        if parsed is not None:
                            ts = parsed
                        break
                timestamps.append(ts)
                level = value.get("level")
                fields.append({"level": level} if type(level) is str else NO_FIELDS)
            if not_json:
                ctx.counters["not_json"] += not_json
            if not_object:
                ctx.counters["not_object"] += not_object
            yield Chunk(lines, timestamps, fields)
