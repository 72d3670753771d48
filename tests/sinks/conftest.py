"""Fixtures for sink tests: a real Mezmo-compatible server on loopback, fast retries."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from logferry.engine.delivery import Delivered, Deliverer, RetryPolicy
from logferry.records import Batch
from logferry.sinks.base import Sink
from logferry.sinks.mezmo import MezmoSink
from logferry.testing.mezmo_server import MezmoServer

KEY = "test-secret-ingestion-key-0123456789"
FAST = RetryPolicy(max_attempts=8, base=0.001, cap=0.01)


class Retrying(Sink):
    """A sink as the engine drives it: each write goes through the one retry layer."""

    def __init__(self, sink: Sink, deliverer: Deliverer) -> None:
        self.inner = sink
        self.deliverer = deliverer
        self.name = sink.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def prepare(self, batch: Batch) -> None:
        self.inner.prepare(batch)

    def write(self, batch: Batch) -> None:
        outcome = self.deliverer.deliver(self.inner, batch)
        if not isinstance(outcome, Delivered):
            assert outcome.error is not None
            raise outcome.error

    def counters(self) -> dict[str, int]:
        return {**self.inner.counters(), "retries": self.deliverer.retries}

    def close(self) -> None:
        self.inner.close()


def retrying(
    sink: Sink, policy: RetryPolicy = FAST, sleep: Callable[[float], None] | None = None
) -> Retrying:
    """``sink`` with writes retried like the engine does (``sleep`` records the waits)."""
    return Retrying(sink, Deliverer(policy, sleep=sleep))


@pytest.fixture
def server() -> Iterator[MezmoServer]:
    with MezmoServer(ingestion_key=KEY, timeout_sleep=0.6, seed=7) as srv:
        yield srv


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the deliverer asked for; recorded instead of slept, to keep tests fast."""
    return []


@pytest.fixture
def make_sink(server: MezmoServer, sleeps: list[float]) -> Iterator[Callable[..., Any]]:
    made: list[Sink] = []

    def make(**options: Any) -> Any:
        options.setdefault("ingestion_key", KEY)
        options.setdefault("hostname", "test-host")
        options.setdefault("timeout", 0.3)
        policy = options.pop("retry", FAST)
        sleep = options.pop("sleep", sleeps.append)  # record backoff delays, don't sleep
        sink = retrying(MezmoSink(options.pop("url", server.url), **options), policy, sleep)
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
