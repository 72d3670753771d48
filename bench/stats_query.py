"""Benchmark: customer stats over millions of rows in DuckDB, against pulling rows into Python.

What it does, in one run:

1. Builds a DuckDB store with the DuckDB sink's ``records`` schema
   and ``--rows`` rows (default 10 million) generated inside DuckDB with ``range()``:
   ``--customers`` customers, 30 UTC days, 90 % status 200, lognormal durations.
2. Times, ``--repeat`` times each, through :class:`logferry.stats.queries.DuckDBStats`
   exactly as the API runs them (read-only open per query): the all-customers stats over
   the whole range, and one customer's stats.
3. Times the original approach on ``--python-rows`` rows (default 1 million): every row
   fetched into Python, grouped per customer and day, sorted, aggregated there. The figure
   for ``--rows`` is that time scaled linearly, and labelled as extrapolated.

Usage::

    python bench/stats_query.py                      # 10M rows, Python approach on 1M
    python bench/stats_query.py --rows 1000000 --python-rows 1000000
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

import logferry
from logferry.sinks.duckdb import DDL
from logferry.stats.queries import DuckDBStats

FIRST_DAY = date(2026, 10, 1)
LAST_DAY = date(2026, 10, 30)
TARGET_SECONDS = 0.5

_FILL = """
INSERT INTO records
SELECT 'file', 'api_requests.log', i,
       TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_microseconds((i * (2592000000000.0 / $rows))::BIGINT),
       '', 'api-request',
       'cust_' || (hash(i) % $customers + 1)::VARCHAR,
       '/api/v1/orders',
       s, d, s < 400
FROM (
    SELECT range AS i,
           CASE WHEN random() < 0.90 THEN 200 WHEN random() < 0.5 THEN 404 ELSE 500 END AS s,
           exp(ln(0.08) + 0.7 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS d
    FROM range($rows)
)
"""


def build(path: Path, rows: int, customers: int) -> float:
    """Create and fill the store; return the seconds it took."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute("SELECT setseed(0.42)")
    con.execute(DDL)
    con.execute(_FILL, {"rows": rows, "customers": customers})
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - t0


def time_it(fn: Any, repeat: int) -> list[float]:
    """Wall seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def python_approach(path: Path, rows: int) -> tuple[float, int]:
    """The original: fetch rows, aggregate per customer and day in Python. (seconds, groups)."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    fetched = con.execute(
        "SELECT customer_id, ts::TIMESTAMP, status_code, duration FROM records WHERE position < $n",
        {"n": rows},
    ).fetchall()
    con.close()
    groups: dict[tuple[str, date], list[tuple[int, float]]] = defaultdict(list)
    for customer, ts, status, duration in fetched:
        groups[(customer, ts.date())].append((status, duration))
    result = {}
    for key, values in groups.items():
        xs = sorted(d for _, d in values)
        n = len(xs)
        ok = sum(1 for s, _ in values if 200 <= s < 400)
        result[key] = (n, ok, ok / n * 100, sum(xs) / n, statistics.median(xs),
                       xs[math.ceil(0.99 * n) - 1])  # fmt: skip
    return time.perf_counter() - t0, len(result)


def main() -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--python-rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"logferry: {Path(logferry.__file__).parent}")

    with tempfile.TemporaryDirectory(prefix="logferry-stats-bench-") as tmp:
        path = Path(tmp) / "store.duckdb"
        built = build(path, args.rows, args.customers)
        print(f"store: {args.rows:,} rows, {args.customers} customers, 30 days, "
              f"built in {built:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
        store = DuckDBStats(str(path))
        everyone = time_it(lambda: store.all_stats(FIRST_DAY, LAST_DAY), args.repeat)
        one = time_it(lambda: store.customer_stats("cust_7", FIRST_DAY, LAST_DAY), args.repeat)
        py_rows = min(args.python_rows, args.rows)
        py_seconds, groups = python_approach(path, py_rows)
        scaled = py_seconds * args.rows / py_rows

    best, median = min(everyone), statistics.median(everyone)
    print(
        f"DuckDB all customers:  best {best:.3f} s, median {median:.3f} s "
        f"(target < {TARGET_SECONDS} s: {'met' if median < TARGET_SECONDS else 'NOT met'})"
    )
    print(f"DuckDB one customer:   best {min(one):.3f} s, median {statistics.median(one):.3f} s")
    print(f"Python, rows pulled:   {py_seconds:.2f} s for {py_rows:,} rows ({groups} groups)")
    if py_rows < args.rows:
        print(f"Python, extrapolated:  ~{scaled:.1f} s for {args.rows:,} rows "
              "(linear scaling of the measured run; not measured)")  # fmt: skip
    print(f"speed-up (all customers, median): ~{scaled / median:.0f}x")


if __name__ == "__main__":
    main()
