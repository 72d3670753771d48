"""csv: header row, quoted fields with commas and newlines, streaming, bad rows."""

from __future__ import annotations

from collections.abc import Callable

from logferry.codecs.formats import DecodeContext, FormatOptions, get_format
from tests.codecs.conftest import decode_merged, split, utc_ms

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000


def _ctx(**options: object) -> DecodeContext:
    return DecodeContext("exports/report.csv", LAST_MODIFIED, FormatOptions(**options))  # type: ignore[arg-type]


SAMPLE = (
    "\ufeffeventTime,user,action,detail\r\n"
    '2024-01-02T03:04:05Z,alice,login,"ok, from 203.0.113.7"\r\n'
    '2024-01-02T03:04:06.5Z,bob,comment,"first line\r\nsecond ""quoted"" line"\r\n'
    "\r\n"
    "2024-01-02T03:04:07Z,carol,logout,h\u00e9llo\r\n"
).encode()


def test_csv_rows_with_quotes_commas_and_newlines(chunked: Chunker) -> None:
    ctx = _ctx(timestamp_fields=("eventTime",))
    out = decode_merged("csv", chunked(SAMPLE, 3), ctx)  # cuts "é" and the BOM in two
    assert out.lines == [
        '2024-01-02T03:04:05Z,alice,login,"ok, from 203.0.113.7"',
        '2024-01-02T03:04:06.5Z,bob,comment,"first line\r\nsecond ""quoted"" line"',
        "2024-01-02T03:04:07Z,carol,logout,h\u00e9llo",
    ]
    assert out.fields == [
        {
            "eventTime": "2024-01-02T03:04:05Z",
            "user": "alice",
            "action": "login",
            "detail": "ok, from 203.0.113.7",
        },
        {
            "eventTime": "2024-01-02T03:04:06.5Z",
            "user": "bob",
            "action": "comment",
            "detail": 'first line\r\nsecond "quoted" line',
        },
        {
            "eventTime": "2024-01-02T03:04:07Z",
            "user": "carol",
            "action": "logout",
            "detail": "h\u00e9llo",
        },
    ]
    assert out.timestamps == [
        utc_ms("2024-01-02T03:04:05+00:00"),
        utc_ms("2024-01-02T03:04:06.5+00:00"),
        utc_ms("2024-01-02T03:04:07+00:00"),
    ]
    assert not ctx.counters


def test_csv_timestamp_column_fallbacks() -> None:
    # Default timestamp_fields first ("timestamp" beats "date"), then time/date/datetime.
    both = b"date,timestamp,v\n2024-01-01,1704164645,x\n"
    assert decode_merged("csv", [both], _ctx()).timestamps == [1704164645000]
    date_only = b"date,v\n2024-01-02,x\n,y\nnot a date,z\n"
    assert decode_merged("csv", [date_only], _ctx()).timestamps == [
        utc_ms("2024-01-02T00:00:00+00:00"),
        LAST_MODIFIED,
        LAST_MODIFIED,
    ]
    none = b"a,b\n1,2\n"
    assert decode_merged("csv", [none], _ctx()).timestamps == [LAST_MODIFIED]


def test_csv_rows_with_wrong_width_are_shipped_raw_and_counted() -> None:
    data = b"time,level,msg\n2024-01-02T03:04:05Z,info,ok\ntoo,few\n1,2,3,4\nlast,row,here"
    ctx = _ctx()
    out = decode_merged("csv", [data], ctx)
    assert out.lines == ["2024-01-02T03:04:05Z,info,ok", "too,few", "1,2,3,4", "last,row,here"]
    assert out.timestamps[1:3] == [LAST_MODIFIED] * 2
    assert out.fields is not None
    assert out.fields[1:3] == [{}, {}]
    assert out.fields[3] == {"time": "last", "level": "row", "msg": "here"}
    assert ctx.counters["malformed"] == 2


def test_csv_quote_never_closed_costs_only_its_own_lines() -> None:
    rows = b"".join(b"2024-01-02T03:04:%02dZ,row %d\n" % (i % 60, i) for i in range(20_000))
    data = b'time,msg\n2024-01-02T03:04:05Z,"never closed\n' + rows
    ctx = _ctx()
    out = decode_merged("csv", [data], ctx)
    # The reader swallows lines into the open field until the field limit stops it; those
    # lines ship raw, one by one, and the rest of the object parses normally again.
    assert len(out.lines) == 20_001
    assert out.lines[0] == '2024-01-02T03:04:05Z,"never closed'
    assert out.lines[-1] == "2024-01-02T03:04:19Z,row 19999"
    assert out.fields is not None
    assert out.fields[-1] == {"time": "2024-01-02T03:04:19Z", "msg": "row 19999"}
    assert 0 < ctx.counters["malformed"] < 20_000
    assert max(len(line) for line in out.lines) < 100


def test_csv_streams_in_bounded_chunks() -> None:
    data = b"n,v\n" + b"".join(b"%d,x\n" % i for i in range(12_000))
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    chunks = list(get_format("csv").decode(iter(pieces), _ctx()))
    assert [len(c) for c in chunks] == [5000, 5000, 2000]
    assert chunks[-1].lines[-1] == "11999,x"


def test_csv_header_only_or_empty_ships_nothing() -> None:
    assert list(get_format("csv").decode([b"a,b\r\n"], _ctx())) == []
    assert list(get_format("csv").decode([b""], _ctx())) == []


def test_csv_long_line_keeps_its_head_and_is_counted() -> None:
    ctx = DecodeContext("k.csv", 5, FormatOptions(max_line_bytes=64))
    data = b"time,msg\n2021-06-25T20:56:21Z," + b"x" * 1000 + b"\n2021-06-25T20:56:22Z,ok"
    out = decode_merged("csv", split(data, 100), ctx)
    assert out.lines[0].startswith("2021-06-25T20:56:21Z,xxx")
    assert out.lines[0].endswith(" …[truncated 957 bytes]")
    assert out.lines[1] == "2021-06-25T20:56:22Z,ok"
    assert out.timestamps == [1624654581000, 1624654582000]
    assert ctx.counters["truncated_lines"] == 1
