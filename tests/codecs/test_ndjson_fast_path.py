"""ndjson's fast path (msgspec, two fields per line) gives the records of a full parse.

The reference below is the per-line decoder ndjson had before: orjson parses each line in
full, the first present timestamp field gives the time, ``level`` the fields. Every input
here, tricky or random, must come out the same from both: lines, times, fields, counters.

One deliberate change is modelled: a number too large for a double (``1e400``) in a field
that is not read no longer makes the line "not JSON" (orjson refuses such a line whole;
JSON allows it, and only the fields read matter).
"""

from __future__ import annotations

import collections
import json
import math
import random
from typing import Any

import orjson
import pytest

from logferry.codecs.formats import DecodeContext, FormatOptions, get_format
from logferry.codecs.framing import iter_lines
from logferry.codecs.timestamps import parse_timestamp

LAST_MODIFIED = 1_700_000_000_000
TS = '"2024-05-01T10:20:30.123Z"'


def _reference(chunks: list[bytes], options: FormatOptions) -> tuple[Any, ...]:
    """(lines, timestamps, fields, counters) as the full-parse decoder made them."""
    counters: collections.Counter[str] = collections.Counter()
    lines_out: list[str] = []
    times: list[int] = []
    fields: list[dict[str, Any]] = []
    for lines in iter_lines(chunks, options.max_line_bytes, counters):
        for line in lines:
            lines_out.append(line)
            try:
                value = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                value = _huge_number_elsewhere(line, options, str(exc))
            if value is _NOT_JSON:
                counters["not_json"] += 1
                times.append(LAST_MODIFIED)
                fields.append({})
                continue
            if type(value) is not dict:
                counters["not_object"] += 1
                times.append(LAST_MODIFIED)
                fields.append({})
                continue
            ts = LAST_MODIFIED
            for name in options.timestamp_fields:
                raw = value.get(name)
                if raw is not None and raw != "":
                    parsed = parse_timestamp(raw)
                    if parsed is not None:
                        ts = parsed
                    break
            times.append(ts)
            level = value.get("level")
            fields.append({"level": level} if type(level) is str else {})
    return lines_out, times, fields, dict(counters)


_NOT_JSON = object()
_WIDE_INT = (-(2**63), 2**64)


def _huge_number_elsewhere(line: str, options: FormatOptions, error: str) -> Any:
    """The object of a line orjson refused only for a number no double holds, if no field
    that is read holds one (the deliberate change); else ``_NOT_JSON``."""
    if "infinity" not in error:
        return _NOT_JSON
    try:
        value = json.loads(line, parse_constant=lambda name: 1 / 0)
    except (ValueError, ZeroDivisionError, RecursionError):
        return _NOT_JSON
    if type(value) is not dict:
        return value
    read = {*options.timestamp_fields, "level"}
    if any(_has_inf(value.get(name)) for name in read):
        return _NOT_JSON
    for name in read:  # integers as orjson reads them
        raw = value.get(name)
        if type(raw) is int and not _WIDE_INT[0] <= raw < _WIDE_INT[1]:
            value[name] = float(raw)
    return value


def _has_inf(value: Any) -> bool:
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, dict):
        return any(_has_inf(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_inf(v) for v in value)
    return False


def _fast(chunks: list[bytes], options: FormatOptions) -> tuple[Any, ...]:
    ctx = DecodeContext("k.ndjson", LAST_MODIFIED, options)
    lines: list[str] = []
    times: list[int] = []
    fields: list[dict[str, Any]] = []
    for chunk in get_format("ndjson").decode(chunks, ctx):
        assert chunk.fields is not None
        assert len(chunk.lines) == len(chunk.timestamps) == len(chunk.fields)
        lines += chunk.lines
        times += chunk.timestamps
        fields += chunk.fields
    return lines, times, fields, dict(ctx.counters)


def _same(data: bytes, options: FormatOptions | None = None, size: int = 0) -> tuple[Any, ...]:
    """Decode ``data`` (cut into ``size``-byte chunks) both ways; they must agree."""
    options = options or FormatOptions()
    chunks = [data[i : i + size] for i in range(0, len(data), size)] if size else [data]
    fast = _fast(chunks, options)
    assert fast == _reference(chunks, options)
    return fast


TRICKY = [
    b"not json at all",
    b"{broken",
    b"[1, 2, 3]",
    b'"just a string"',
    b"42",
    b"null",
    b"{}",
    b'{"msg": "no time"}',
    b'{"timestamp": 1714558830}',
    b'{"timestamp": 1714558830123}',
    b'{"timestamp": 1714558830123456}',
    b'{"timestamp": 1714558830123456789}',
    b'{"timestamp": 1714558830.5}',
    b'{"timestamp": -1}',
    b'{"timestamp": 18446744073709551615}',
    b'{"timestamp": 18446744073709551616}',
    b'{"timestamp": -9223372036854775809}',
    b'{"timestamp": 1e-400}',
    b'{"timestamp": 1.7976931348623157e308}',
    b'{"timestamp": true}',
    b'{"timestamp": {"seconds": 1714558830}}',
    b'{"timestamp": [1714558830]}',
    b'{"timestamp": "", "time": ' + TS.encode() + b"}",
    b'{"timestamp": null, "ts": 1714558830}',
    b'{"timestamp": "yesterday", "time": 1714558830}',
    b'{"@timestamp": ' + TS.encode() + b', "level": "warn"}',
    b'{"timestamp": "2024-05-01T10:20:30+02:00", "level": "info"}',
    b'{"timestamp": "2024-05-01 10:20:30", "level": ""}',
    b'{"timestamp": "1714558830", "level": 3}',
    b'{"timestamp": ' + TS.encode() + b', "level": ["a"]}',
    b'{"timestamp": ' + TS.encode() + b', "level": {"name": "x"}}',
    b'{"timestamp": 1, "timestamp": ' + TS.encode() + b"}",
    b'{"time\\u0073tamp": ' + TS.encode() + b', "lev\\u0065l": "d\\u00e9bug"}',
    b'{"nested": {"timestamp": 1714558830}, "level": "info"}',
    '{"msg": "Zahlung bestätigt 😀 ☃", "level": "ünïcode"}'.encode(),
    b'{"msg": "\\ud83d\\ude00"}',
    b'{"msg": "\\ud800"}',
    b'{"msg": "\\udc00x"}',
    b'{"msg": "bad \xff\xfe utf-8", "timestamp": 5}',
    b'{"level": "\xff"}',
    b'{"msg": "a\\u0000b", "level": "x\\ny"}',
    b'{"msg": "\x01 raw control"}',
    b'{"x": 1,}',
    b'{"x": NaN}',
    b'{"x": Infinity}',
    b'{"x": 01}',
    b"{} {}",
    b'{"a": 1}{"b": 2}',
    b"   ",
    b"\t",
    b' {"timestamp": 7} ',
    b'{"timestamp": 7}\r',
    b'{"a":',
    b"1}",
    b'{"a": {}',
    b"}",
    b"\xef\xbb\xbf{}",
    b'{"x": ' + b"[" * 1023 + b"]" * 1023 + b"}",
    b'{"x": ' + b"[" * 1024 + b"]" * 1024 + b"}",
    b'{"x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"x": 123456789012345678901234567890, "timestamp": 9}',
]


@pytest.mark.parametrize("line", TRICKY, ids=range(len(TRICKY)))
def test_each_tricky_line_alone_and_among_good_ones(line: bytes) -> None:
    good = b'{"timestamp": ' + TS.encode() + b', "level": "info"}\n'
    _same(line + b"\n")
    _same(good * 3 + line + b"\n" + good * 3)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_all_tricky_lines_together_in_chunks_of_any_size(newline: bytes) -> None:
    data = b"\xef\xbb\xbf" + newline.join(TRICKY) + newline
    whole = _same(data)
    assert whole[3]["not_json"] > 10
    for size in (1, 7, 64, 1000):
        assert _same(data, size=size) == whole


def test_blank_lines_and_crlf_and_no_final_newline() -> None:
    out = _same(b'\n\r\n{"timestamp": 1}\r\n\n\n{"timestamp": 2, "level": "x"}')
    assert out[1] == [1000, 2000]


def test_lines_at_the_record_cap_are_truncated_then_shipped_as_not_json() -> None:
    long = b'{"timestamp": ' + TS.encode() + b', "msg": "' + b"x" * 5000 + b'"}'
    options = FormatOptions(max_line_bytes=1000)
    fits = b'{"timestamp": 1, "msg": "' + b"y" * (1000 - 27) + b'"}'
    assert len(fits) == 1000
    out = _same(long + b"\n" + fits + b"\n" + long + b"\n", options, size=300)
    assert out[3] == {"truncated_lines": 2, "not_json": 2}


def test_custom_timestamp_fields_including_level_itself() -> None:
    data = b'{"when": 1714558830, "level": "info"}\n{"level": 1714558830}\n{"when": ""}\n'
    _same(data, FormatOptions(timestamp_fields=("when", "level")))
    _same(data, FormatOptions(timestamp_fields=("when", "when")))


def _mutate(rng: random.Random, line: bytes) -> bytes:
    """Damage a valid line a little: what truncation, bit rot or a bad writer does."""
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(data) + 1)
        kind = rng.randrange(4)
        if kind == 0 and pos < len(data):
            del data[pos]
        elif kind == 1:
            data.insert(pos, rng.choice(b'{}[]",:\\ 0e.-\x00\xff\xc3tn'))
        elif kind == 2 and pos < len(data):
            data[pos] = rng.randrange(256)
        else:
            data[pos:pos] = rng.choice([b'"timestamp":1,', b"\\u", b"\r", b"\n", b"{}"])
    return bytes(data)


def test_random_lines_good_and_damaged_agree() -> None:
    rng = random.Random(20241129)
    values: list[Any] = [1714558830, 1714558830.25, "2024-05-01T10:20:30Z", "", None, "x", -5]
    lines = []
    for i in range(3000):
        record: dict[str, Any] = {"msg": f"line {i} \u00e9\u2603", "n": rng.random()}
        for name in rng.sample(["timestamp", "@timestamp", "time", "ts"], rng.randint(0, 2)):
            record[name] = rng.choice(values)
        if rng.random() < 0.7:
            record["level"] = rng.choice(["info", "warn", "", 3, None, ["x"]])
        line = orjson.dumps(record)
        lines.append(_mutate(rng, line) if rng.random() < 0.2 else line)
    data = b"\n".join(lines) + b"\n"
    out = _same(data)
    assert out[3]["not_json"] > 100
    for size in (4096, 65536):
        assert _same(data, size=size) == out


def test_a_number_out_of_double_range_in_an_unread_field_no_longer_hides_the_time() -> None:
    # The deliberate change: orjson refuses 1e400 anywhere in a line, so the line used to
    # be "not JSON"; now only the fields read matter, and this line has a good time.
    _same(b'{"x": [1e400], "timestamp": 5}\n{"timestamp": 1e400}\n{"level": [-1e999]}\n')
    data = b'{"x": 1e400, "timestamp": 1714558830, "level": "info"}\n'
    ctx = DecodeContext("k", LAST_MODIFIED)
    (chunk,) = get_format("ndjson").decode([data], ctx)
    assert chunk.timestamps == [1714558830000]
    assert chunk.fields == [{"level": "info"}]
    assert not ctx.counters
