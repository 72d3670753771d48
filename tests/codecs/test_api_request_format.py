"""api-request: the generator's lines, UTC timestamps, malformed lines shipped and counted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from logferry.codecs.formats import DecodeContext, detect_format, get_format
from logferry.codecs.formats.api_request import _decode_lines, malformed_reason
from logferry.codecs.formats.api_request_fast import parse_block
from logferry.generate.api_requests import ApiRequestGenerator
from logferry.records import MALFORMED_KEY, Chunk, as_list, concat_columns


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _decode(data: bytes, ctx: DecodeContext, size: int = 1 << 20) -> Chunk:
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    out = list(get_format("api-request").decode(chunks, ctx))
    assert all(c.fields is None and c.columns is not None for c in out)  # columns, no dicts
    cols = {
        k: as_list(v) for k, v in (concat_columns([(c.columns, len(c)) for c in out]) or {}).items()
    }
    n = sum(len(c) for c in out)
    # Per-record views of the columns, absent values left out, for readable assertions.
    rows = [{k: v[i] for k, v in cols.items() if v[i] is not None} for i in range(n)]
    return Chunk(
        [x for c in out for x in c.lines],
        [x for c in out for x in c.timestamps],
        rows,
    )


GOOD = (
    b"2026-11-01 23:59:59 cust_7 /api/v1/orders 200 0.084213\n"
    b"2026-11-02 00:00:00 cust_12 /api/v1/users/42 404 1.5\r\n"
    b"2026-11-02 00:00:00 cust_7 /health 503 0\n"
    b"2026-11-02 00:00:01 cust_3 /api/v1/search 304 12.000001\n"
)


@pytest.mark.parametrize("size", [7, 64, 1 << 20])
def test_lines_fields_and_utc_timestamps(size: int) -> None:
    ctx = DecodeContext("logs/api_requests.log", 0)
    out = _decode(GOOD, ctx, size)
    assert out.lines[0] == "2026-11-01 23:59:59 cust_7 /api/v1/orders 200 0.084213"
    assert out.timestamps == [
        _ms("2026-11-01T23:59:59"),
        _ms("2026-11-02T00:00:00"),
        _ms("2026-11-02T00:00:00"),
        _ms("2026-11-02T00:00:01"),
    ]
    assert out.fields == [
        {"customer_id": "cust_7", "request_path": "/api/v1/orders", "status_code": 200,
         "duration": 0.084213, "success": True},
        {"customer_id": "cust_12", "request_path": "/api/v1/users/42", "status_code": 404,
         "duration": 1.5, "success": False},
        {"customer_id": "cust_7", "request_path": "/health", "status_code": 503,
         "duration": 0.0, "success": False},
        {"customer_id": "cust_3", "request_path": "/api/v1/search", "status_code": 304,
         "duration": 12.000001, "success": True},
    ]  # fmt: skip
    assert not ctx.counters


@pytest.mark.parametrize("status,success", [(199, False), (200, True), (399, True), (400, False)])
def test_success_boundaries(status: int, success: bool) -> None:
    out = _decode(f"2026-11-01 00:00:00 c /p {status} 0.1\n".encode(), DecodeContext("k", 0))
    assert out.fields[0]["success"] is success  # type: ignore[index]


BAD = [
    ("2026-11-01 00:00:00 cust_1 /p 200", "6 space-separated"),
    ("2026-11-01 00:00:00 cust_1 /p 200 0.1 extra", "6 space-separated"),
    ("2026-13-01 00:00:00 cust_1 /p 200 0.1", "valid"),
    ("2026-11-01 24:00:00 cust_1 /p 200 0.1", "valid"),
    ("01/11/2026 00:00:00 cust_1 /p 200 0.1", "valid"),
    ("2026-11-01 00:00:00 cust_1 /p OK 0.1", "status"),
    ("2026-11-01 00:00:00 cust_1 /p 99 0.1", "status"),
    ("2026-11-01 00:00:00 cust_1 /p 200 fast", "duration"),
    ("2026-11-01 00:00:00 cust_1 /p 200 -0.5", "duration"),
    ("2026-11-01 00:00:00 cust_1 /p 200 nan", "duration"),
    ("2026-11-01 00:00:00 cust_1 /p 200 inf", "duration"),
    ("Traceback (most recent call last):", "6 space-separated"),
]


@pytest.mark.parametrize("line,reason", BAD)
def test_malformed_lines_ship_raw_and_are_counted(line: str, reason: str) -> None:
    ctx = DecodeContext("api_requests.log", 1234)
    out = _decode(GOOD + line.encode() + b"\n" + GOOD, ctx)
    assert len(out.lines) == 9
    assert out.lines[4] == line
    assert out.timestamps[4] == 1234  # no event time: the object's
    assert out.fields[4] == {MALFORMED_KEY: malformed_reason(line)}
    assert ctx.counters["malformed"] == 1
    assert [f["customer_id"] for f in out.fields[5:]] == ["cust_7", "cust_12", "cust_7", "cust_3"]  # type: ignore[index]
    assert reason in (malformed_reason(line) or "")


def test_malformed_reason_of_a_good_line_is_none() -> None:
    assert malformed_reason("2026-11-01 00:00:00 cust_1 /p 200 0.1") is None


def test_generated_lines_round_trip() -> None:
    gen = ApiRequestGenerator(customers=5, seed=3)
    lines = gen.lines(5000, _ms("2026-11-01T12:00:00") / 1000, 600)
    ctx = DecodeContext("api_requests.log", 0)
    out = _decode("".join(lines).encode(), ctx)
    assert len(out.lines) == 5000
    assert not ctx.counters
    for line, ts, fields in zip(lines, out.timestamps, out.fields, strict=True):
        d, t, customer, path, status, duration = line.split()
        assert ts == _ms(f"{d}T{t}")
        assert fields == {"customer_id": customer, "request_path": path,
                          "status_code": int(status), "duration": float(duration),
                          "success": 200 <= int(status) < 400}  # fmt: skip


def test_auto_detects_by_key_name_only() -> None:
    head = GOOD[:200]
    assert detect_format("var/log/api_requests.log", head) == "api-request"
    assert detect_format("api_requests-2.log.gz", head) == "api-request"
    assert detect_format("var/log/app.log", head) == "lines"


# The vectorised fast path must give exactly what the line-by-line parse gives, and decline
# (None) every block the line-by-line parse would find a malformed line in.

EDGE_LINES = [
    "2024-02-29 23:59:59 cust_1 /leap 200 5.",
    "2000-02-29 00:00:00 cust_1 /leap400 201 .5",
    "1970-01-01 00:00:00 c /epoch 100 0",
    "1969-12-31 23:59:59 c /before 599 1e-3",
    "0001-01-01 00:00:00 c /first 399 12",
    "9999-12-31 23:59:59 c /last 400 0.30000000000000004",
    "2026-11-01 12:00:00 cust_1 /a,b=c\\d 204 123456789.123456789",
    "2026-11-01 12:00:00 a-very-long-customer-name-that-takes-more-than-eight-words-of-bytes-to-hold /p 200 0.5",
]


def _slow(lines: list[str]) -> tuple[list[int], dict[str, list[object]], int]:
    ctx = DecodeContext("k", 0)
    chunk = _decode_lines(lines, ctx)
    cols = {k: as_list(v) for k, v in (chunk.columns or {}).items() if k != MALFORMED_KEY}
    return chunk.timestamps, cols, ctx.counters["malformed"]


def _assert_fast_equals_slow(lines: list[str]) -> None:
    got = parse_block(("\n".join(lines) + "\n").encode())
    assert got is not None
    fast_lines, timestamps, columns = got
    slow_ts, slow_cols, malformed = _slow(lines)
    assert malformed == 0
    assert fast_lines == lines
    assert timestamps.tolist() == slow_ts
    assert {k: v.tolist() for k, v in columns.items()} == slow_cols
    # Plain Python values once listed, as every non-vectorised sink expects.
    assert type(columns["status_code"].tolist()[0]) is int
    assert type(columns["success"].tolist()[0]) is bool


def test_fast_path_equals_line_by_line_on_generated_and_edge_lines() -> None:
    gen = ApiRequestGenerator(customers=50, seed=11)
    lines = [x.rstrip("\n") for x in gen.lines(20_000, 1_790_000_000.0, 500.0)]
    _assert_fast_equals_slow(lines + EDGE_LINES)
    _assert_fast_equals_slow(EDGE_LINES[:1])


@pytest.mark.parametrize("line,reason", BAD)
def test_fast_path_declines_malformed_lines(line: str, reason: str) -> None:
    good = "2026-11-01 00:00:00 cust_1 /p 200 0.1"
    assert parse_block(f"{good}\n{line}\n{good}\n".encode()) is None


@pytest.mark.parametrize(
    "line",
    [
        "2026-11-01 00:00:00 cust_1 /p 200 0.1 ",  # trailing space
        "2026-11-01 00:00:00 cust_1  /p 200 0.1",  # two spaces
        "2026-11-01\t00:00:00 cust_1 /p 200 0.1",  # tab
        "2026-11-01 00:00:00 cüst_1 /p 200 0.1",  # non-ASCII
        "2026-11-01 00:00:00 cust_1 /p 200 0.1\r",  # CR
        "2026-11-01 00:00:00 cust_1 /p 0200 0.1",
        "2026-11-01 00:00:00 cust_1 /p +20 0.1",
        "2026-11-01 00:00:00 cust_1 /p 200 nan",
        "2026-11-01 00:00:00 cust_1 /p 200 1_0.5",  # float() takes it; the fast path leaves it
        "2026-11-01 00:00:00 cust_1 /p 200 -0.1",
        "2026-11-01 00:00:00 cust_1 /p 200 1e999",
        "2026-02-29 00:00:00 cust_1 /p 200 0.1",  # not a leap year
        "2026-11-01 24:00:00 cust_1 /p 200 0.1",
        "2026-11-01 00:00:60 cust_1 /p 200 0.1",
        "",  # blank line
    ],
)
def test_fast_path_declines_what_it_does_not_parse_exactly(line: str) -> None:
    good = "2026-11-01 00:00:00 cust_1 /p 200 0.1"
    assert parse_block(f"{good}\n{line}\n".encode()) is None
    # The decoder still yields every non-blank line, through the slow path.
    out = _decode(f"{good}\n{line}\n".encode(), DecodeContext("k", 0))
    assert out.lines == [good, line.rstrip("\r")] if line else [good]


def test_fast_path_against_mutated_lines() -> None:
    # Random single-byte edits: whenever the fast path accepts a block, it must agree with
    # the line-by-line parse, which must then find nothing malformed.
    import random

    rng = random.Random(5)
    base = [x.rstrip("\n") for x in ApiRequestGenerator(seed=2).lines(200, 1_790_000_000.0, 5.0)]
    alphabet = "0123456789 .-:eE+_/abcxyz\t"
    accepted = 0
    for _ in range(400):
        lines = list(base)
        i = rng.randrange(len(lines))
        chars = list(lines[i])
        chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        lines[i] = "".join(chars)
        got = parse_block(("\n".join(lines) + "\n").encode())
        if got is None:
            continue
        accepted += 1
        slow_ts, slow_cols, malformed = _slow(lines)
        assert malformed == 0, lines[i]
        assert got[1].tolist() == slow_ts
        assert {k: v.tolist() for k, v in got[2].items()} == slow_cols
    assert 50 < accepted < 400  # both kinds of outcome were exercised


def test_numpy_is_loaded_only_by_what_needs_it() -> None:
    # The S3 → Mezmo path stays within its memory budget because it never loads NumPy.
    import subprocess
    import sys

    code = """
import sys
from logferry.cli.main import main
from logferry.codecs.formats import DecodeContext, get_format
from logferry.sinks import open_sink
list(get_format("ndjson").decode([b'{"a": 1}\\n'], DecodeContext("k", 0)))
assert "numpy" not in sys.modules, "numpy loaded before any vectorised format ran"
list(get_format("api-request").decode([b"2026-11-01 00:00:00 c /p 200 0.1\\n"], DecodeContext("k", 0)))
assert "numpy" in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
