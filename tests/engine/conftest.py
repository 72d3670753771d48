"""Engine tests share one process's metrics: start each with no stale health entries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from logferry.engine.metrics import METRICS


@pytest.fixture(autouse=True)
def _fresh_health() -> Iterator[None]:
    for name in list(METRICS.unhealthy()):
        METRICS.forget(name)
    yield
