"""cloudwatch-export: objects written by ``aws logs create-export-task``."""

from __future__ import annotations

import gzip
from collections.abc import Callable

from logferry.codecs import decode_object
from logferry.codecs.formats import DecodeContext
from tests.codecs.conftest import decode_merged, utc_ms

Chunker = Callable[[bytes, int], list[bytes]]

LAST_MODIFIED = 1_700_000_000_000
KEY = (
    "exports/lambda/1d0f4e5a-6b7c-4d8e-9f01-23456789abcd/"
    "2024/01/02/[$LATEST]0123456789abcdef0123456789abcdef/000000.gz"
)
EXPORT = (
    b"2024-01-02T03:04:05.678Z START RequestId: 8f5e2b1c-1111-2222-3333-444455556666 "
    b"Version: $LATEST\n"
    b'2024-01-02T03:04:05.679Z {"level":"info","msg":"hello \xc3\xa9"}\n'
    b"2024-01-02T03:04:05.680Z java.lang.IllegalStateException: boom\n"
    b"\tat com.example.Handler.handle(Handler.java:42)\n"
    b"2024-01-02T03:04:06.000Z \n"
    b"2024-01-02T03:04:07+01:00 an unusual but valid ISO stamp\n"
    b"2024-13-02T03:04:08.000Z month thirteen\n"
    b"2024-01-02T03:04:09.123Z END RequestId: 8f5e2b1c-1111-2222-3333-444455556666\n"
)


def test_export_lines_ship_the_message_at_its_timestamp(chunked: Chunker) -> None:
    ctx = DecodeContext(KEY, LAST_MODIFIED)
    out = decode_merged("cloudwatch-export", chunked(EXPORT, 5), ctx)
    assert out.lines == [
        "START RequestId: 8f5e2b1c-1111-2222-3333-444455556666 Version: $LATEST",
        '{"level":"info","msg":"hello \u00e9"}',
        "java.lang.IllegalStateException: boom",
        "\tat com.example.Handler.handle(Handler.java:42)",  # continuation: shipped whole
        "",
        "an unusual but valid ISO stamp",
        "2024-13-02T03:04:08.000Z month thirteen",
        "END RequestId: 8f5e2b1c-1111-2222-3333-444455556666",
    ]
    assert out.timestamps == [
        utc_ms("2024-01-02T03:04:05.678+00:00"),
        utc_ms("2024-01-02T03:04:05.679+00:00"),
        utc_ms("2024-01-02T03:04:05.680+00:00"),
        LAST_MODIFIED,
        utc_ms("2024-01-02T03:04:06.000+00:00"),
        utc_ms("2024-01-02T02:04:07+00:00"),
        LAST_MODIFIED,
        utc_ms("2024-01-02T03:04:09.123+00:00"),
    ]
    assert out.fields is None
    assert ctx.counters["malformed"] == 2


def test_export_object_auto_detected_by_key() -> None:
    ctx = DecodeContext(KEY, LAST_MODIFIED)
    chunks = list(decode_object([gzip.compress(EXPORT)], ctx))
    assert ctx.format_name == "cloudwatch-export"
    assert chunks[0].lines[0].startswith("START RequestId")


def test_write_test_object_ships_as_plain_lines() -> None:
    ctx = DecodeContext("exports/lambda/aws-logs-write-test", LAST_MODIFIED)
    chunks = list(decode_object([b"Permission Check Successful"], ctx))
    assert ctx.format_name == "lines"
    assert chunks[0].lines == ["Permission Check Successful"]
