"""Line framing and whole-document reading."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from logferry.codecs.framing import MAX_BLOCK_LINES, iter_lines, peek, read_document
from logferry.errors import DecodeError

Chunker = Callable[[bytes, int], list[bytes]]


def _all(chunks: list[bytes]) -> list[str]:
    return [line for lines in iter_lines(chunks) for line in lines]


def test_lf_and_crlf_lines_blank_lines_skipped() -> None:
    data = b"one\r\ntwo\n\n\r\nthree\r\n  \nfour"
    assert _all([data]) == ["one", "two", "three", "  ", "four"]


def test_one_list_per_chunk_that_completes_lines() -> None:
    out = list(iter_lines([b"a\nb", b"c\nd\n", b"partial", b" line\n"]))
    assert out == [["a"], ["bc", "d"], ["partial line"]]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_utf8_split_across_chunks(size: int, chunked: Chunker) -> None:
    text = "héllo wörld €uro 🚀 日本語\r\nsecond ✓ line\nthird"
    assert _all(chunked(text.encode(), size)) == [
        "héllo wörld €uro 🚀 日本語",
        "second ✓ line",
        "third",
    ]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert _all([b"ok \xff\xfe bytes\n", b"cut \xe2\x82\n"]) == [
        "ok \ufffd\ufffd bytes",
        "cut \ufffd",
    ]


def test_final_line_without_newline_and_trailing_cr() -> None:
    assert _all([b"a\nlast\r"]) == ["a", "last"]
    assert _all([b"only"]) == ["only"]
    assert _all([b"", b"\n\n", b""]) == []
    assert _all([]) == []


def test_utf8_bom_is_dropped_from_first_line() -> None:
    assert _all([b"\xef\xbb", b'\xbf{"a":1}\n{"b":2}\n']) == ['{"a":1}', '{"b":2}']


def test_long_line_over_many_chunks(chunked: Chunker) -> None:
    line = b"x" * 100_000
    assert _all(chunked(line + b"\n" + line, 7)) == [line.decode(), line.decode()]


def test_read_document_within_limit() -> None:
    assert read_document([b'{"a":', b" 1}"], limit=8) == b'{"a": 1}'


def test_read_document_over_limit() -> None:
    with pytest.raises(DecodeError, match=r"^document larger than 8 bytes; raise max_document"):
        read_document([b'{"a":', b" 12}"], limit=8)


def test_peek_keeps_every_byte(chunked: Chunker) -> None:
    chunks = chunked(b"0123456789" * 10, 7)
    head, rest = peek(chunks, 20)
    assert head == b"01234567890123456789"
    assert b"".join(rest) == b"0123456789" * 10
    head, rest = peek([b"ab"], 20)
    assert (head, list(rest)) == (b"ab", [b"ab"])
    head, rest = peek([], 20)
    assert (head, list(rest)) == (b"", [])


@pytest.mark.parametrize("line", [b"a", b"", b"ab\r", b"\xff"])
def test_lists_stay_bounded_with_more_lines_than_a_list_holds(line: bytes) -> None:
    count = MAX_BLOCK_LINES * 2 + 7
    lists = list(iter_lines([line + b"\n"] * 3 + [(line + b"\n") * count, b"tail\n"]))
    assert all(0 < len(lines) <= MAX_BLOCK_LINES for lines in lists)
    text = line.decode("utf-8", "replace").removesuffix("\r")
    want = [text] * (count + 3) if text else []
    assert [x for lines in lists for x in lines] == [*want, "tail"]
