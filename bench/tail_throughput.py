"""Benchmark: tail → DuckDB and tail → InfluxDB through ``logferry ship``, in lines/s.

Writes N api-request lines (the generator's format) into a file, then ships it with
``logferry ship tail:///DIR/*.log --format api-request --to SINK`` in a fresh process per
sink (reading to the current end, as a catch-up after a restart would) and prints wall time,
lines/s and the rows the store holds afterwards. InfluxDB is a real ``influxd`` started for
the run (Debian's ``influxdb`` package; tests/influx.py installs it when missing).

    python bench/tail_throughput.py                 # 1,000,000 lines, each sink once
    python bench/tail_throughput.py --repeat 3      # best and median of 3 runs per sink
    python bench/tail_throughput.py --lines 200000
    PYTHONPATH=/path/to/checkout/src python bench/tail_throughput.py   # another checkout

The shipping processes inherit the environment; the first line printed names the
``logferry`` they import.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

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


def which_logferry() -> str:
    """Where the ``logferry`` that ``python -m logferry`` runs comes from (PYTHONPATH wins)."""
    code = (
        "import importlib.util, os, logferry; print(os.path.dirname(logferry.__file__),"
        " '(engine/ package)' if importlib.util.find_spec('logferry.engine') else '(no engine/ package)')"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return p.stdout.strip()


def ship(glob: str, sink: str, ledger: Path) -> tuple[float, float, dict[str, object]]:
    """Run one ``logferry ship``; return its wall seconds, CPU seconds and JSON summary."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "logferry", "ship", f"tail://{glob}", "--format", "api-request",
         "--to", sink, "--ledger", f"sqlite:///{ledger}", "--batch-lines", "50000",
         "--batch-bytes", str(8 << 20), "--json", "--quiet"],
        capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    seconds = time.perf_counter() - began
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"logferry failed ({p.returncode}): {p.stderr.strip()[-500:]}")
    return seconds, cpu, json.loads(p.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per sink (fresh store each)")
    args = ap.parse_args()
    print(f"logferry: {which_logferry()}")
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
        runs: dict[str, list[float]] = {"duckdb": [], "influxdb": []}
        cpus: dict[str, list[float]] = {"duckdb": [], "influxdb": []}
        shipped: dict[str, int] = {}
        stored: dict[str, int] = {}
        with InfluxServer(database="bench") as influx:
            for i in range(args.repeat):
                # Fresh store, ledger and database per run: each run ships the whole file.
                store = d / f"store-{i}.db"
                secs, cpu, summary = ship(f"{d}/logs/*.log", f"duckdb:///{store}", d / f"l1-{i}.db")
                runs["duckdb"].append(secs)
                cpus["duckdb"].append(cpu)
                shipped["duckdb"] = int(summary["lines"])  # type: ignore[call-overload]
                con = duckdb.connect(str(store), read_only=True)
                stored["duckdb"] = int(con.execute("SELECT count(*) FROM records").fetchone()[0])  # type: ignore[index]
                con.close()
                store.unlink()
                influx.drop_database("bench")
                influx.create_database("bench")
                url = f"influxdb+{influx.url}/bench?measurement=api_requests"
                secs, cpu, summary = ship(f"{d}/logs/*.log", url, d / f"l2-{i}.db")
                runs["influxdb"].append(secs)
                cpus["influxdb"].append(cpu)
                shipped["influxdb"] = int(summary["lines"])  # type: ignore[call-overload]
                count = influx.query('SELECT COUNT("duration") FROM api_requests', "bench")
                stored["influxdb"] = int(count[0].get("count", 0))
        print(
            f"\n{'sink':10} {'best s':>7} {'lines/s':>10} {'median':>10} {'target':>9}"
            f"         {'shipped':>10} {'stored':>10} {'CPU s':>6}"
        )
        for name, times in runs.items():
            best = args.lines / min(times)
            median = args.lines / statistics.median(times)
            mark = "met" if median >= TARGETS[name] else "NOT met"
            print(
                f"{name:10} {min(times):7.2f} {best:10,.0f} {median:10,.0f} {TARGETS[name]:9,}"
                f" {mark:8} {shipped[name]:10,} {stored[name]:10,}"
                f" {statistics.median(cpus[name]):6.2f}"
            )
        print(f"({args.repeat} run(s) per sink; wall time of the whole `logferry ship` process,")
        print(" start-up included; the target is judged on the median. CPU s: the median of")
        print(" the shipping process's user + system seconds, influxd not included; it varies")
        print(" less than wall time when other work shares the cores)")
        if any(shipped[k] != args.lines or stored[k] != args.lines for k in runs):
            raise SystemExit("lines missing: see the shipped and stored columns")


if __name__ == "__main__":
    main()
