"""Benchmark: tail → DuckDB and tail → InfluxDB through ``logferry ship``, in lines/s.

Writes N api-request lines (the generator's format) into a file, then ships it with
``logferry ship tail:///DIR/*.log --format api-request --to SINK`` in a fresh process per
sink (reading to the current end, as a catch-up after a restart would) and prints wall time,
lines/s and the rows the store holds afterwards. InfluxDB is a real ``influxd`` started for
the run (Debian's ``influxdb`` package; tests/influx.py installs it when missing).

    python bench/tail_throughput.py                 # 1,000,000 lines
    python bench/tail_throughput.py --lines 200000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from logferry.generate.api_requests import ApiRequestGenerator  # noqa: E402
from tests.influx import InfluxServer  # noqa: E402

TARGETS = {"duckdb": 300_000, "influxdb": 150_000}


def write_log(path: Path, lines: int) -> None:
    gen = ApiRequestGenerator(customers=50, seed=3)
    start = 1_790_000_000.0
    with path.open("w") as f:
        done = 0
        while done < lines:
            n = min(100_000, lines - done)
            f.writelines(gen.lines(n, start + done / 1000, n / 1000))
            done += n


def ship(glob: str, sink: str, ledger: Path) -> tuple[float, dict[str, object]]:
    began = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "logferry", "ship", f"tail://{glob}", "--format", "api-request",
         "--to", sink, "--ledger", f"sqlite:///{ledger}", "--batch-lines", "50000",
         "--batch-bytes", str(8 << 20), "--json", "--quiet"],
        capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    seconds = time.perf_counter() - began
    if p.returncode != 0:
        raise SystemExit(f"logferry failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return seconds, json.loads(p.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="logferry-tail-bench-") as tmp:
        d = Path(tmp)
        (d / "logs").mkdir()
        log = d / "logs" / "api_requests.log"
        t0 = time.perf_counter()
        write_log(log, args.lines)
        os.sync()  # measure the shipper, not the kernel writing the fresh log back
        size = log.stat().st_size
        print(
            f"wrote {args.lines:,} lines ({size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        results = []
        secs, summary = ship(f"{d}/logs/*.log", f"duckdb:///{d}/store.db", d / "l1.db")
        results.append(("duckdb", secs, summary))
        with InfluxServer(database="bench") as influx:
            url = f"influxdb+{influx.url}/bench?measurement=api_requests"
            secs, summary = ship(f"{d}/logs/*.log", url, d / "l2.db")
            results.append(("influxdb", secs, summary))
            count = influx.query('SELECT COUNT("duration") FROM api_requests', "bench")
        print(f"\n{'sink':10} {'seconds':>8} {'lines/s':>10} {'target':>9}  lines shipped")
        for name, secs, summary in results:
            rate = int(summary["lines"]) / secs  # type: ignore[call-overload]
            mark = "met" if rate >= TARGETS[name] else "NOT met"
            print(
                f"{name:10} {secs:8.2f} {rate:10,.0f} {TARGETS[name]:9,} {mark:8} {summary['lines']:,}"
            )
        print(f"influxdb points stored: {count[0].get('count', count[0])}")
        print("(wall time of the whole `logferry ship` process, start-up included)")


if __name__ == "__main__":
    main()
