"""``ndjson``: one JSON value per line; the line is shipped as written, not re-serialized.

Only a line's timestamp and ``level`` are wanted, so each line is decoded at C speed by
msgspec into a struct of just those fields (the rest of the line is checked, not built),
over a whole block at a time. A block with a line msgspec refuses is decoded line by line:
msgspec where it can, else orjson (which also tells JSON that is not an object), so one bad
line costs its block the fast path, never its records.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
import orjson

from logferry.codecs.formats.base import NO_FIELDS, DecodeContext, Format
from logferry.codecs.framing import iter_lines
from logferry.codecs.timestamps import parse_timestamps
from logferry.records import Chunk

#: orjson reads integers in this range as int, larger ones as float; so do we.
_INT_MIN, _INT_END = -(2**63), 2**64
#: Distinct levels whose ``{"level": …}`` dict is shared between records (never mutated).
_SHARED_LEVELS = 256
_level_fields: dict[Any, dict[str, Any]] = {None: NO_FIELDS}
#: What msgspec raises for a line it does not take (RecursionError: nested too deep).
_REFUSED = (msgspec.DecodeError, RecursionError)


class _Picker:
    """A msgspec decoder reading only the timestamp fields and ``level`` of each line."""

    def __init__(self, names: tuple[str, ...]) -> None:
        wanted = list(dict.fromkeys((*names, "level")))
        attrs = [f"f{i}" for i in range(len(wanted))]
        # gc=False: JSON values never form cycles, and untracked structs keep the cyclic
        # collector from running (and walking every live object) every 700 lines.
        struct = msgspec.defstruct(
            "Picked",
            [(a, Any, None) for a in attrs],
            rename=dict(zip(attrs, wanted, strict=True)),
            gc=False,
        )
        self.struct = struct
        self.decoder = msgspec.json.Decoder(struct)
        self.pairs = list(zip(attrs, wanted, strict=True))
        #: What a line that is not a JSON object yields: no time, no level.
        self.nothing = struct()
        self.times: list[Callable[[Any], Any]] = [
            operator.attrgetter(attrs[wanted.index(n)]) for n in dict.fromkeys(names)
        ]
        self.level = operator.attrgetter(attrs[wanted.index("level")])

    def from_dict(self, value: dict[str, Any]) -> Any:
        """The struct msgspec would make of the object orjson parsed into ``value``."""
        return self.struct(**{attr: value.get(name) for attr, name in self.pairs})


@functools.lru_cache(maxsize=16)
def _picker(names: tuple[str, ...]) -> _Picker:
    return _Picker(names)


class NdjsonFormat(Format):
    """Newline-delimited JSON. Lines that are not JSON are shipped as they are and counted."""

    name = "ndjson"

    def decode(self, chunks: Iterable[bytes], ctx: DecodeContext) -> Iterator[Chunk]:
        """Yield one chunk per block of lines (about one per decompressed chunk).

        ``fields`` keeps only the line's ``level`` (what the Mezmo sink sends along): a
        parsed object costs several times its line in memory, and batches wait in queues.
        """
        picker = _picker(tuple(ctx.options.timestamp_fields))
        decode = picker.decoder.decode
        default = ctx.last_modified_ms
        for lines in iter_lines(chunks, ctx.options.max_line_bytes, ctx.counters):
            try:
                picked = list(map(decode, lines))
            except _REFUSED:
                picked = _pick_each(lines, picker, ctx)
            times = _times(picked, picker, default)
            yield Chunk(lines, times, _fields(list(map(picker.level, picked))))


def _pick_each(lines: list[str], picker: _Picker, ctx: DecodeContext) -> list[Any]:
    """Each line's struct, or for a line msgspec refuses, what orjson makes of it."""
    decode = picker.decoder.decode
    out: list[Any] = []
    not_json = not_object = 0
    for line in lines:
        try:
            out.append(decode(line))
            continue
        except _REFUSED:
            pass
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            not_json += 1
            out.append(picker.nothing)
            continue
        if type(value) is not dict:
            not_object += 1
            out.append(picker.nothing)
            continue
        out.append(picker.from_dict(value))
    if not_json:
        ctx.counters["not_json"] += not_json
    if not_object:
        ctx.counters["not_object"] += not_object
    return out


def _times(picked: list[Any], picker: _Picker, default: int) -> list[int]:
    """Each line's time from the first present timestamp field, else ``default``."""
    first, *others = picker.times
    raws = list(map(first, picked))
    if others and (None in raws or "" in raws):
        for i, raw in enumerate(raws):
            if raw is None or raw == "":
                for get in others:
                    raw = get(picked[i])
                    if raw is not None and raw != "":
                        raws[i] = raw
                        break
    if int in map(type, raws):
        for i, raw in enumerate(raws):
            if type(raw) is int and not _INT_MIN <= raw < _INT_END:
                raws[i] = float(raw)  # as orjson reads it
    return parse_timestamps(raws, default)


def _fields(levels: list[Any]) -> list[dict[str, Any]]:
    """``{"level": …}`` per record with a string level, else NO_FIELDS.

    A level's dict is shared by the records that have it (fields are never mutated), so
    a block of lines costs a lookup per line, not a dict.
    """
    shared = _level_fields
    try:
        return list(map(shared.__getitem__, levels))
    except (KeyError, TypeError):
        pass  # a level not seen yet (or unhashable)
    out: list[dict[str, Any]] = []
    for level in levels:
        if type(level) is not str:
            out.append(NO_FIELDS)
            continue
        fields = shared.get(level)
        if fields is None:
            fields = {"level": level}
            if len(shared) < _SHARED_LEVELS:
                shared[level] = fields
        out.append(fields)
    return out
