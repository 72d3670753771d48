"""Benchmark: lines/s of api-request batches into the DuckDB and InfluxDB sinks, one process.

Generates ``--lines`` records in memory (seeded, 50 customers) and decodes them with the
``api-request`` format, as a tail does, so batches carry typed NumPy columns. Then times
``prepare`` + ``write`` of every batch on one thread, into a fresh DuckDB file (default, and
with ``?index=true``) and into a real ``influxd`` (started like the tests do, see
tests/influx.py). ``--dicts`` gives the batches per-record dicts instead, which is the general
path other formats take. Targets from issue 6: ≥ 300k lines/s into DuckDB, ≥ 150k lines/s
into InfluxDB.

    python bench/sink_throughput.py                  # 1M lines, batches of 50k
    python bench/sink_throughput.py --dicts          # the general (per-record dict) path
    python bench/sink_throughput.py --lines 200000 --batch 10000 --only duckdb
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.influx

import logferry
from logferry.codecs.formats import DecodeContext, get_format
from logferry.records import Batch, concat_columns
from logferry.sinks.base import Sink
from logferry.sinks.duckdb import DuckDBSink
from logferry.sinks.influxdb import InfluxDBSink

PATHS = ["/api/users", "/api/orders", "/api/items", "/api/search", "/health", "/api/login"]


def make_batches(total: int, size: int, seed: int, dicts: bool) -> list[Batch]:
    """``total`` api-request records, one per ~10 ms, in batches of ``size``."""
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    batches = []
    for start in range(0, total, size):
        n = min(size, total - start)
        lines: list[str] = []
        stamps: list[int] = []
        fields: list[dict[str, Any] | None] = []
        for i in range(start, start + n):
            ts = t0 + i * 10
            cust = f"customer-{rng.randrange(50):02d}"
            path = rng.choice(PATHS)
            status = rng.choice((200, 200, 200, 201, 204, 301, 404, 500, 503))
            duration = round(rng.expovariate(10.0), 6)
            lines.append(f"2023-11-14 22:13:{i % 60:02d} {cust} {path} {status} {duration}")
            stamps.append(ts)
            fields.append(
                {"customer_id": cust, "request_path": path, "status_code": status,
                 "duration": duration, "success": 200 <= status < 400}
            )  # fmt: skip
        batch = Batch("bench", "api_requests.log", start, start + n, lines, stamps,
                      fields, format="api-request")  # fmt: skip
        if not dicts:
            data = ("\n".join(lines) + "\n").encode()
            chunks = list(get_format("api-request").decode([data], DecodeContext("bench", 0)))
            batch.fields = None
            batch.columns = concat_columns([(c.columns, len(c)) for c in chunks])
        batches.append(batch)
    return batches


def run(sink: Sink, batches: list[Batch]) -> float:
    """Seconds to prepare and write every batch, in order, on this thread."""
    started = time.perf_counter()
    for batch in batches:
        batch.prepared.clear()
        sink.prepare(batch)
        sink.write(batch)
    return time.perf_counter() - started


def report(name: str, lines: int, seconds: float, target: int) -> dict[str, Any]:
    rate = lines / seconds
    verdict = "meets" if rate >= target else "MISSES"
    print(f"{name:<32} {lines:>9,} lines {seconds:7.2f} s {rate:>11,.0f} lines/s  "
          f"({verdict} {target:,})")  # fmt: skip
    return {"sink": name, "lines": lines, "seconds": seconds, "lines_per_s": rate}


def main() -> None:
    """Parse arguments, run the selected sinks, print one line per run."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=6)
    ap.add_argument("--only", choices=("duckdb", "influxdb"))
    ap.add_argument("--dicts", action="store_true", help="per-record dicts, not columns")
    args = ap.parse_args()
    print(f"logferry: {Path(logferry.__file__).parent}")
    batches = make_batches(args.lines, args.batch, args.seed, args.dicts)
    print(f"batches carry {'per-record dicts' if args.dicts else 'typed NumPy columns'}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "duckdb"):
            for label, query in (
                ("duckdb (default)", ""),
                ("duckdb (?index=true)", "?index=true"),
            ):
                sink = DuckDBSink(f"duckdb:///{tmp}/{len(query)}.db{query}")
                report(label, args.lines, run(sink, batches), 300_000)
                run(sink, batches[:2])  # replay: must add nothing
        if args.only in (None, "influxdb"):
            from tests.influx import InfluxServer

            with InfluxServer() as server:
                influx = InfluxDBSink(f"influxdb+{server.url}/{server.database}")
                seconds = run(influx, batches)
                influx.close()
                report("influxdb v1 (gzip, 2 in flight)", args.lines, seconds, 150_000)
                (row,) = server.query('SELECT COUNT("status_code") FROM api_requests')
                if row["count"] != args.lines:
                    sys.exit(f"influxdb holds {row['count']} points, expected {args.lines}")


if __name__ == "__main__":
    main()
