"""Timestamp parsing (always UTC) and ISO formatting."""

from __future__ import annotations

import time

import pytest

from logferry.codecs.timestamps import format_iso, parse_timestamp

T = 1624654581000  # 2021-06-25T20:56:21Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-06-25T20:56:21Z", T),
        ("2021-06-25T20:56:21z", T),
        ("2021-06-25T20:56:21.123Z", T + 123),
        ("2021-06-25T20:56:21.1Z", T + 100),
        ("2021-06-25T20:56:21.123456789Z", T + 123),
        ("2021-06-25T22:56:21+02:00", T),
        ("2021-06-25T15:26:21.5-05:30", T + 500),
        ("2021-06-25T22:56:21+0200", T),
        ("2021-06-25 20:56:21", T),
        ("2021-06-25T20:56:21", T),
        ("2021-06-25 20:56:21.042", T + 42),
        ("2021-06-25", 1624579200000),
        ("20210625T205621Z", T),
        ("  2021-06-25T20:56:21Z ", T),
        (1624654581, T),
        (1624654581.123, T + 123),
        (1624654581123, T + 123),
        (1624654581123456, T + 123),
        (1624654581123456789, T + 123),
        ("1624654581", T),
        ("1624654581.25", T + 250),
        ("1624654581123", T + 123),
        (0, 0),
        ("", None),
        ("   ", None),
        (None, None),
        (True, None),
        ("garbage", None),
        ("2021-13-01T00:00:00Z", None),
        ("2021-02-30T00:00:00Z", None),
        (float("nan"), None),
        ([2021], None),
    ],
)
def test_parse_timestamp(value: object, expected: int | None) -> None:
    assert parse_timestamp(value) == expected


def test_naive_strings_are_utc_not_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert parse_timestamp("2021-06-25 20:56:21.5") == T + 500
        assert parse_timestamp("20210625T205621") == T
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_cache_returns_same_results_when_repeated() -> None:
    values = [f"2021-06-25T20:56:{s:02d}Z" for s in range(60)] * 200
    expected = [T - 21000 + (i % 60) * 1000 for i in range(len(values))]
    assert [parse_timestamp(v) for v in values] == expected


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (T + 123, "2021-06-25T20:56:21.123Z"),
        (T, "2021-06-25T20:56:21.000Z"),
        (0, "1970-01-01T00:00:00.000Z"),
        (-1, "1969-12-31T23:59:59.999Z"),
    ],
)
def test_format_iso(ms: int, text: str) -> None:
    assert format_iso(ms) == text
    assert parse_timestamp(text) == ms


def test_fast_path_reuses_suffix_across_seconds_and_dates() -> None:
    # The second ("...T20:56:21") and the suffix (".123+02:00") are cached apart:
    # mixing them must still give exact results.
    assert parse_timestamp("2021-06-25T22:56:21.123+02:00") == T + 123
    assert parse_timestamp("2021-06-25T22:56:21.500+02:00") == T + 500
    assert parse_timestamp("2021-06-25T22:56:21.123Z") == T + 123 + 7_200_000
    assert parse_timestamp("2021-06-26T01:56:21.123+02:00") == T + 123 + 10_800_000
    assert parse_timestamp("2021-06-25 22:56:21.123+02:00") == T + 123
    assert parse_timestamp("2021-06-25T22:56:21.123+02:00junk") is None
