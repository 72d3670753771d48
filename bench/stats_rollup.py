"""Benchmark: all-customers stats from the daily rollups against the exact query, side by side.

What it does, in one run:

1. Builds a store of ``--rows`` rows (default 10 million) inside DuckDB with ``range()`` and
   random functions, as ``bench/stats_query.py`` does (50 customers, 30 UTC days), or reuses
   ``--store PATH`` when it exists.
2. Builds the rollups from those rows once (what the first logferry with rollups does to an
   existing store) and times it.
3. Times, ``--repeat`` times each, through :class:`logferry.stats.queries.DuckDBStats` as the
   API runs them: all customers over the 30 days from the rollups and exactly
   (``exact=True``), then one customer both ways; prints the medians and the ratio, and
   checks the two answers agree (counts equal, median and p99 within the sketch's 1 %).
4. Maintenance: writes ``--batches`` batches of ``--batch-rows`` rows (default 20 × 10,000,
   typed columns as the api-request decoder hands them over, timestamps in the last day)
   through the DuckDB sink (which does no rollup work per batch), times the all-customers
   query while those rows are not folded, then one fold of them and the settle of the days
   they touched (what the sink does at most once a second), then the query again.

Usage::

    python bench/stats_rollup.py                              # 10M rows
    python bench/stats_rollup.py --rows 100000000 --repeat 3  # 100M rows (about 1.2 GB)
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from stats_query import FIRST_DAY, LAST_DAY, build, time_it

from logferry.records import Batch
from logferry.sinks.duckdb import DuckDBSink
from logferry.stats import rollups
from logferry.stats.queries import AllCustomersStats, DuckDBStats

TARGET_SECONDS = 0.2
_LAST_DAY_MS = 1_793_318_400_000  # 2026-10-30 00:00 UTC


def max_error(fast: AllCustomersStats, exact: AllCustomersStats) -> float:
    """Largest relative error of median/p99; raises if any count or average differs."""
    worst = 0.0
    assert [c.customer_id for c in fast.customers] == [c.customer_id for c in exact.customers]
    for f, e in zip(fast.customers, exact.customers, strict=True):
        assert [d.date for d in f.days] == [d.date for d in e.days], f.customer_id
        for fs, es in zip([*f.days, f.total], [*e.days, e.total], strict=True):
            assert (fs.total_requests, fs.successful_requests) == (
                es.total_requests,
                es.successful_requests,
            ), f.customer_id
            assert math.isclose(fs.avg_latency or 0, es.avg_latency or 0, rel_tol=1e-9)
            for got, want in ((fs.median_latency, es.median_latency), (fs.p99_latency, es.p99_latency)):  # fmt: skip
                if want:
                    worst = max(worst, abs((got or 0) - want) / want)
    return worst


def batches(count: int, rows: int, customers: int, start: int) -> list[Batch]:
    """``count`` batches of typed columns, as the vectorised api-request decoder makes them."""
    rng = np.random.default_rng(7)
    out = []
    for b in range(count):
        status = np.where(rng.random(rows) < 0.9, 200, 500).astype(np.int16)
        ts = _LAST_DAY_MS + rng.integers(0, 86_400_000, rows)
        pos = start + b * rows
        batch = Batch("bench", "api.log", pos, pos + rows, [""] * rows, ts.tolist(),
                      format="api-request")  # fmt: skip
        batch.columns = {
            "customer_id": np.array(
                [f"cust_{c}" for c in rng.integers(1, customers + 1, rows)], dtype=object
            ),
            "request_path": np.full(rows, "/api/v1/orders", dtype=object),
            "status_code": status,
            "duration": np.exp(np.log(0.08) + 0.7 * rng.standard_normal(rows)),
            "success": status < 400,
        }
        out.append(batch)
    return out


def write_all(sink: DuckDBSink, todo: list[Batch]) -> list[float]:
    """Seconds per ``sink.write``."""
    out = []
    for batch in todo:
        sink.prepare(batch)
        t0 = time.perf_counter()
        sink.write(batch)
        out.append(time.perf_counter() - t0)
    return out


def ms(values: list[float]) -> str:
    """Median and best of ``values`` (seconds) in milliseconds."""
    return f"median {statistics.median(values) * 1000:.1f} ms, best {min(values) * 1000:.1f} ms"


def main() -> None:
    """Parse arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--store", type=Path, help="reuse (or keep) the generated store here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="logferry-rollup-bench-") as tmp:
        path = args.store or Path(tmp) / "store.duckdb"
        if not path.exists():
            built = build(path, args.rows, args.customers)
            print(f"store: {args.rows:,} rows built in {built:.1f} s "
                  f"({path.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
        con = duckdb.connect(str(path))
        rows = con.execute("SELECT count(*) FROM records").fetchone()
        n = rows[0] if rows else 0
        for table in ("rollup_state", "rollup_days", "rollup_latency"):
            con.execute(f"DROP TABLE IF EXISTS {table}")
        t0 = time.perf_counter()
        rollups.create(con)
        con.execute("CHECKPOINT")
        created = time.perf_counter() - t0
        sizes = con.execute(
            "SELECT (SELECT count(*) FROM rollup_days), (SELECT count(*) FROM rollup_latency)"
        ).fetchone()
        con.close()
        print(f"rollups built from {n:,} rows in {created:.1f} s (once per store): "
              f"{sizes[0] if sizes else 0:,} day rows, "
              f"{sizes[1] if sizes else 0:,} latency bucket rows")  # fmt: skip

        store = DuckDBStats(str(path))
        runs: dict[str, Callable[[], Any]] = {
            "all customers": lambda: store.all_stats(FIRST_DAY, LAST_DAY),
            "all customers, exact": lambda: store.all_stats(FIRST_DAY, LAST_DAY, exact=True),
            "one customer": lambda: store.customer_stats("cust_7", FIRST_DAY, LAST_DAY),
            "one customer, exact": lambda: store.customer_stats(
                "cust_7", FIRST_DAY, LAST_DAY, exact=True
            ),
        }
        timings = {name: time_it(fn, args.repeat) for name, fn in runs.items()}
        fast = store.all_stats(FIRST_DAY, LAST_DAY)
        assert fast.latency_method == "ddsketch-1%", fast.latency_method
        error = max_error(fast, store.all_stats(FIRST_DAY, LAST_DAY, exact=True))
        print(f"\n{n:,} rows, 50 customers × 30 days, {args.repeat} runs each:")
        for who in ("all customers", "one customer"):
            roll, exact = (
                statistics.median(timings[who]),
                statistics.median(timings[f"{who}, exact"]),
            )
            print(f"  {who:14s} rollups {roll:.3f} s (best {min(timings[who]):.3f})   "
                  f"exact {exact:.3f} s (best {min(timings[f'{who}, exact']):.3f})   "
                  f"ratio {exact / roll:.0f}x")  # fmt: skip
        roll = statistics.median(timings["all customers"])
        print(f"  target all customers < {TARGET_SECONDS} s: "
              f"{'met' if roll < TARGET_SECONDS else 'NOT met'}; counts and averages equal, "
              f"largest median/p99 relative error {error:.3%} (bound 1%)")  # fmt: skip

        todo = batches(args.batches, args.batch_rows, args.customers, 0)
        sink = DuckDBSink(path, settle_every=math.inf, lock_timeout=60)
        writes = write_all(sink, todo)
        # Not closed yet (closing folds): the idle timer lets go of the file for readers,
        # which add the rows past the watermark themselves.
        unfolded = time_it(lambda: store.all_stats(FIRST_DAY, LAST_DAY), args.repeat)
        fast = store.all_stats(FIRST_DAY, LAST_DAY)
        assert max_error(fast, store.all_stats(FIRST_DAY, LAST_DAY, exact=True)) <= 0.0100001
        with duckdb.connect(str(path)) as con:
            t0 = time.perf_counter()
            con.execute("BEGIN TRANSACTION")
            folded = rollups.fold(con)
            t1 = time.perf_counter()
            days = rollups.settle(con)
            con.execute("COMMIT")
            t2 = time.perf_counter()
        sink.close()
        settled = time_it(lambda: store.all_stats(FIRST_DAY, LAST_DAY), args.repeat)
        print(f"\nmaintenance, {args.batches} batches of {args.batch_rows:,} rows each:")
        print(f"  sink.write (no rollup work per batch): {ms(writes)}")
        print(f"  fold of {folded:,} rows: {(t1 - t0) * 1000:.0f} ms; settle of {days} "
              f"customer-days: {(t2 - t1) * 1000:.0f} ms (the sink does both at most once a "
              "second)")  # fmt: skip
        print(f"  all customers with those rows not folded: {ms(unfolded)}; "
              f"folded and settled: {ms(settled)}")  # fmt: skip


if __name__ == "__main__":
    main()
