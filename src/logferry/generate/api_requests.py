"""Synthetic API request lines, as the stats demo's generator writes them.

``YYYY-mm-dd HH:MM:SS CUSTOMER PATH STATUS DURATION`` (UTC, duration in seconds), appended
to a file one whole batch per write so that a tailer never sees half a batch.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Request paths and their relative frequency.
PATHS: tuple[tuple[str, int], ...] = (
    ("/api/v1/orders", 30),
    ("/api/v1/orders/{id}", 20),
    ("/api/v1/users", 15),
    ("/api/v1/users/{id}", 10),
    ("/api/v1/payments", 8),
    ("/api/v1/search", 10),
    ("/api/v1/reports/export", 2),
    ("/health", 5),
)
#: Status codes and their relative frequency: mostly 2xx, some 3xx, 4xx and 5xx.
STATUSES: tuple[tuple[int, int], ...] = (
    (200, 850),
    (201, 50),
    (204, 20),
    (304, 10),
    (400, 15),
    (401, 10),
    (403, 5),
    (404, 20),
    (429, 5),
    (500, 10),
    (502, 3),
    (503, 2),
)


@dataclass
class ApiRequestGenerator:
    """Makes request lines: customers ``cust_1`` … ``cust_N``, lognormal durations."""

    customers: int = 50
    seed: int | None = None
    #: Median duration in seconds and the lognormal shape (sigma).
    median_seconds: float = 0.08
    sigma: float = 0.7
    _rng: random.Random = field(init=False, repr=False)
    _stamps: dict[int, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        self._rng = random.Random(self.seed)

    def lines(self, count: int, start: float, span: float = 0.0) -> list[str]:
        """``count`` lines (with newlines) timed evenly over ``[start, start + span)`` epoch s."""
        rng = self._rng
        customers = [f"cust_{i}" for i in range(1, self.customers + 1)]
        paths = rng.choices([p for p, _ in PATHS], [w for _, w in PATHS], k=count)
        statuses = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES], k=count)
        mu = math.log(self.median_seconds)
        out = []
        for i in range(count):
            second = int(start + span * i / count) if count else int(start)
            stamp = self._stamps.get(second)
            if stamp is None:
                if len(self._stamps) > 4096:
                    self._stamps.clear()
                stamp = self._stamps[second] = time.strftime(
                    "%Y-%m-%d %H:%M:%S", time.gmtime(second)
                )
            path = paths[i].replace("{id}", str(rng.randint(1, 99999)))
            duration = rng.lognormvariate(mu, self.sigma)
            out.append(f"{stamp} {rng.choice(customers)} {path} {statuses[i]} {duration:.6f}\n")
        return out


def append_batch(path: Path, lines: list[str]) -> None:
    """Append ``lines`` with one ``write`` call on an O_APPEND descriptor (whole lines only)."""
    data = "".join(lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # regular files take it all at once; loop only for the odd short write
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def generate(
    path: Path,
    *,
    batch: int = 100,
    interval: float = 1.0,
    max_lines: int | None = None,
    start: float | None = None,
    generator: ApiRequestGenerator | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Append ``batch`` lines every ``interval`` seconds until ``max_lines`` or ``stop``.

    Lines are timed now (UTC). With ``start`` (epoch s) the clock is virtual for backfills:
    batch *k* covers ``[start + k·interval, start + (k+1)·interval)`` and nothing sleeps.
    Returns the number of lines written.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    gen = generator or ApiRequestGenerator()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    t0 = clock()
    k = 0
    while max_lines is None or written < max_lines:
        if stop is not None and stop.is_set():
            break
        n = batch if max_lines is None else min(batch, max_lines - written)
        if start is None:
            due = t0 + k * interval
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            lines = gen.lines(n, clock())
        else:
            lines = gen.lines(n, start + k * interval, interval)
        append_batch(path, lines)
        written += n
        k += 1
        if on_batch is not None:
            on_batch(written)
    return written
