"""Fixtures for sink tests: a real Mezmo-compatible server on loopback, fast retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logferry.records import Batch
from logferry.sinks.http import RetryPolicy
from logferry.sinks.mezmo import MezmoSink
from logferry.testing.mezmo_server import MezmoServer

KEY = "test-secret-ingestion-key-0123456789"


@pytest.fixture
def server() -> Iterator[MezmoServer]:
    with MezmoServer(ingestion_key=KEY, timeout_sleep=0.6, seed=7) as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the sinks asked for; recorded instead of slept, to keep tests fast."""
    return []


@pytest.fixture
def make_sink(server: MezmoServer, sleeps: list[float]) -> Iterator[Callable[..., MezmoSink]]:
    made: list[MezmoSink] = []

    def make(**options: Any) -> MezmoSink:
        options.setdefault("ingestion_key", KEY)
        options.setdefault("hostname", "test-host")
        options.setdefault("retry", RetryPolicy(max_attempts=8, base=0.001, cap=0.01))
        options.setdefault("timeout", 0.3)
        options.setdefault("sleep", sleeps.append)  # record backoff delays, don't sleep
        sink = MezmoSink(options.pop("url", server.url), **options)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


@pytest.fixture
def make_batch() -> Callable[..., Batch]:
    return _make_batch


def _make_batch(n: int, *, width: int = 20, start_ms: int = 1_700_000_000_000, **kw: Any) -> Batch:
    """A batch of ``n`` distinct lines of about ``width`` characters."""
    lines = [f"line {i:07d} ".ljust(width, "x") for i in range(n)]
    return Batch(
        source=kw.pop("source", "test"),
        key=kw.pop("key", "obj.log"),
        start=0,
        end=n,
        lines=lines,
        timestamps=[start_ms + i for i in range(n)],
        **kw,
    )
