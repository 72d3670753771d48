"""Streamed JSON documents: lists parsed run by run give what a whole-document parse gives."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from logferry.codecs import documents
from logferry.codecs.formats import DecodeContext, FormatOptions
from logferry.errors import DecodeError
from tests.codecs.conftest import decode_merged, split

_NASTY = ["\\", '"', '\\"', "[{,}]", "é ü", "\\\\", ",", "]", "}", "\n\t", "\u2028", ""]


def _value(rnd: random.Random, depth: int = 0) -> Any:
    kind = rnd.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rnd.choice(_NASTY) + rnd.choice(_NASTY) * rnd.randrange(3)
    if kind == 1:
        return rnd.randrange(-(10**12), 10**12)
    if kind == 2:
        return rnd.choice([True, False, None, 1.5, -0.25, 1e-7])
    if kind == 3:
        return "x" * rnd.randrange(40)
    if kind == 4:
        return [_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(_NASTY) + str(i): _value(rnd, depth + 1) for i in range(rnd.randrange(4))}


def _ctx(**options: int) -> DecodeContext:
    return DecodeContext("k", 7, FormatOptions(**options))  # type: ignore[arg-type]


@pytest.fixture(params=[1, 3, 7, 64])
def piece(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Tiny pieces, so that every byte of a document falls on a piece boundary somewhere."""
    monkeypatch.setattr(documents, "_PIECE", request.param)
    return int(request.param)


@pytest.mark.parametrize("seed", range(6))
def test_runs_match_a_whole_parse(seed: int, piece: int) -> None:
    rnd = random.Random(seed)
    elements = [_value(rnd) for _ in range(40)]
    array = orjson.dumps(elements, option=orjson.OPT_INDENT_2 if seed % 2 else 0)
    expected = [orjson.dumps(e).decode() for e in elements]
    assert decode_merged("json", split(b"\xef\xbb\xbf " + array, 5), _ctx()).lines == expected
    events = [{"eventTime": "2021-06-25T20:56:21Z", "v": e} for e in elements]
    trail = orjson.dumps({"Records": events, "late": [elements, {"a": "]}"}]})
    out = decode_merged("cloudtrail", split(trail, piece + 1), _ctx())
    assert out.lines == [orjson.dumps(e).decode() for e in events]
    assert out.timestamps == [1624654581000] * len(events)
    assert out.fields == events


@pytest.mark.parametrize(
    "doc",
    [b"[]", b" [ ] ", b"[\n]\n", b'{"Records": []}', b'{"Records":[ ] , "x": 1}'],
)
def test_empty_lists(doc: bytes, piece: int) -> None:
    fmt = "cloudtrail" if doc.lstrip().startswith(b"{") else "json"
    assert decode_merged(fmt, split(doc, 2), _ctx()).lines == []


@pytest.mark.parametrize(
    "doc",
    [
        b"[1,,2]",
        b"[,1]",
        b"[1,]",
        b"[1 2]",
        b"[1]x",
        b"[1] [2]",
        b"[1",
        b'["a\\"]',
        b'[{"a":1},{"b":}]',
        b'{"Records":[1]',
        b'{"Records":[1]} x',
        b'{"Records":[1],}',
        b'{"Records":[1,]}',
        b'{"Records":[1] "x": 2}',
    ],
)
def test_invalid_documents_fail_in_one_line(doc: bytes, piece: int) -> None:
    fmt = "cloudtrail" if doc.startswith(b"{") else "json"
    with pytest.raises(DecodeError, match=r"^invalid (JSON|CloudTrail) document: [^\n]+$"):
        decode_merged(fmt, split(doc, 3), _ctx())


def test_nesting_inside_an_element_is_limited(piece: int) -> None:
    ok = b"[1," + b"[" * 127 + b"]" * 127 + b"]"
    assert len(decode_merged("json", [ok], _ctx()).lines) == 2
    deep = b'{"Records":[{"a":' + b"[" * 127 + b"]" * 127 + b"}]}"
    with pytest.raises(DecodeError, match=r"^JSON nested deeper than 128 levels"):
        decode_merged("cloudtrail", split(deep, 100), _ctx())


def test_record_over_the_limit_fails_with_its_number() -> None:
    doc = orjson.dumps(["a", "b" * 100, {"c": "d" * 5000}])
    with pytest.raises(DecodeError, match=r"^record 3 of the document is over 1000 bytes"):
        decode_merged("json", split(doc, 10), _ctx(max_line_bytes=1000))


def test_runs_come_in_bounded_chunks() -> None:
    doc = orjson.dumps([{"n": i, "pad": "p" * (i % 300)} for i in range(30_000)])
    chunks = list(documents.open_document([doc], "JSON document", (), (1 << 30, 1 << 20)).batches)  # type: ignore[arg-type]
    assert sum(map(len, chunks)) == 30_000
    from logferry.codecs.formats import get_format

    out = list(get_format("json").decode(split(doc, 1 << 16), _ctx()))
    assert [len(c) for c in out][:2] == [5000, 5000]
    assert sum(map(len, out)) == 30_000
    assert max(sum(map(len, c.lines)) for c in out) < (1 << 20) + 400
