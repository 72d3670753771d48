"""The Mezmo payload and its gzip: byte for byte what a dict per line through orjson gives."""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import pytest

import logferry.sinks.http as http
from logferry.records import Batch
from logferry.sinks.mezmo import MezmoSink

LINES = [
    '{"timestamp":"2024-05-01T10:20:30.123Z","msg":"quote \\" and backslash \\\\"}',
    'plain "quoted" text with \\ backslash\\',
    "control \x00\x01\x1f\x7f chars, tab\tand \u2028 \u2029 separators",
    "Zahlung bestätigt 😀 ☃ </script>",
    "",
    "x" * 5000,
]
LEVELS: list[Any] = ["info", "", None, 3, "warn", ["a"]]


def _sink(**options: Any) -> MezmoSink:
    return MezmoSink(
        "mezmo+http://127.0.0.1:9", ingestion_key="k", hostname="h", app="an app", **options
    )


def _batch(with_levels: bool) -> Batch:
    fields = [{"level": lv} if lv is not None else {} for lv in LEVELS] if with_levels else None
    times = [1714558830123 + i for i in range(len(LINES))]
    return Batch("src", "a/key", 0, len(LINES), list(LINES), times, fields)  # type: ignore[arg-type]


def _reference(batch: Batch, include_meta: bool) -> bytes:
    """The payload as it was built before: one dict per line, then orjson."""
    entries: list[dict[str, Any]] = []
    levels = batch.column("level")
    for i, line in enumerate(batch.lines):
        entry: dict[str, Any] = {"timestamp": batch.timestamps[i], "line": line, "app": "an app"}
        level = None if levels is None else levels[i]
        if isinstance(level, str) and level:
            entry["level"] = level
        if include_meta:
            entry["meta"] = {"source": batch.source, "key": batch.key}
        entries.append(entry)
    return orjson.dumps({"lines": entries})


@pytest.mark.parametrize("include_meta", [False, True])
@pytest.mark.parametrize("with_levels", [False, True])
def test_payload_bytes_match_the_dict_encoding(include_meta: bool, with_levels: bool) -> None:
    sink = _sink(include_meta=include_meta)
    batch = _batch(with_levels)
    try:
        assert sink._encode(sink._entries(batch, batch.lines)) == _reference(batch, include_meta)
    finally:
        sink.close()


def test_a_lone_surrogate_fails_as_orjson_fails() -> None:
    sink = _sink()
    batch = Batch("src", "k", 0, 1, ["bad \ud800 line"], [1])
    try:
        with pytest.raises(orjson.JSONEncodeError):
            sink._encode(sink._entries(batch, batch.lines))
    finally:
        sink.close()


@pytest.mark.parametrize("level", range(1, 10))
def test_gzip_at_every_level_is_one_standard_member(level: int) -> None:
    body = _reference(_batch(True), True) * 50
    packed = http.gzip_compress(body, level)
    assert packed[:2] == b"\x1f\x8b"
    assert zlib.decompress(packed, 31) == body


def test_gzip_without_isal_is_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "_isal_zlib", None)
    body = b'{"lines":[]}' * 1000
    assert http.gzip_compress(body, 1) == zlib.compress(body, 1, wbits=31)


def test_isal_is_used_when_installed() -> None:
    # The fast extra is part of dev: the suite runs with it, so the fast path is tested.
    assert http._isal_zlib is not None, "ISA-L missing: pip install -e '.[dev]' (isal)"
