"""Benchmark: ``ship --processes N`` against one process, on a bucket of 40 objects.

What it does, in one run:

1. Generates one gzip NDJSON object of ``--mb`` MB (uncompressed; default 8) with
   ship_throughput.py's realistic app lines, and uploads it ``--objects`` times (default 40)
   under different keys to moto in server mode.
2. Serves a loopback Mezmo-compatible ingest server (``store=False, validate=False``, and
   ``count_later``: it inflates and counts the bodies after each run, unless
   ``--count-inline``; a real ingest service does not share the 2 cores). Both
   servers live in this process; the tools run in their own processes (through
   ship_throughput.py's spawner, so wall time, CPU and peak RSS are measured by ``wait4``,
   the copies of ``--processes`` included). The servers' CPU is reported beside them: on a
   2-core machine they compete with the processes measured.
3. Runs ``logferry ship s3://… --to mezmo+http://… --processes P`` for each P of
   ``--processes`` (default 1 and 2), alternating, ``--repeat`` times (a fresh ledger each),
   checks every line arrived, and prints lines/s, the speed-up over one process, each
   run's CPU (the tool's and the servers') and the load average.

Usage::

    python bench/processes.py                     # 40 × 8 MB, 1 and 2 processes, once each
    python bench/processes.py --repeat 3 --processes 1 2 3
    python bench/processes.py --json
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson
import ship_throughput as st  # bench/ is the script's directory, so on sys.path

BUCKET = "logferry-bench-processes"
TARGET_SPEEDUP = 1.7  # two processes on two cores


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=40, help="objects in the bucket")
    p.add_argument("--mb", type=float, default=8.0, help="MB of NDJSON per object")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts")
    p.add_argument("--repeat", type=int, default=1, help="runs of each process count")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--count-inline",
        action="store_true",
        help="the receiver inflates and counts each request as it comes, on the cores the "
        "tools run on (default: it keeps the bodies and counts them after each run)",
    )
    p.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark."""
    args = parse_args(argv)
    spawner = st.Spawner()  # first, while this process is small (see Spawner)
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    os.environ.update(st.FAKE_AWS_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        stack.callback(spawner.close)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lf-bench-p-")))
        data = st.generate(work / "object.ndjson.gz", args.mb, args.seed)
        lines = data.lines * args.objects
        log(
            f"{args.objects} objects of {data.lines:,} lines ({data.raw_bytes / st.MB:.1f} MB, "
            f"{data.gz_bytes / st.MB:.1f} MB gzip): {lines:,} lines"
        )
        keys = {f"app/2024/05/01/app-{i:04d}.ndjson.gz": data.path for i in range(args.objects)}
        s3_endpoint, server = st.start_servers(
            stack, BUCKET, keys, count_later=not args.count_inline
        )
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": s3_endpoint,
            "LOGDNA_INGESTION_KEY": st.INGESTION_KEY,
        }
        lf_source = st.which_logferry(env)
        st.compile_logferry(lf_source)
        log(f"logferry: {lf_source}; load average {os.getloadavg()[0]:.2f}")

        runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.processes}
        for i in range(args.repeat):
            for n in args.processes:  # alternate, so drift hits every count alike
                ledger = work / f"ledger-{n}-{i}.db"
                cmd = [
                    sys.executable, "-m", "logferry", "ship", f"s3://{BUCKET}/",
                    "--to", f"{server.url}?hostname={st.HOSTNAME}", "--ledger",
                    f"sqlite:///{ledger}", "--quiet", "--json", "--processes", str(n),
                ]  # fmt: skip
                load = os.getloadavg()[0]
                run, _ = st.run_measured(spawner, f"p{n}", cmd, env, server, work, args.json)
                doc = {
                    **{k: getattr(run, k) for k in st.Run.__slots__},  # type: ignore[attr-defined]
                    "processes": n,
                    "lines_per_s": lines / run.seconds,
                    "load_average": load,
                    "ok": run.exit_code == 0 and run.lines_delivered == lines,
                }
                runs[n].append(doc)
                log(
                    f"  run {i + 1}/{args.repeat} --processes {n}: {run.seconds:6.2f} s, "
                    f"{doc['lines_per_s']:,.0f} lines/s, CPU {run.cpu_seconds:.1f} s, "
                    f"servers' CPU {run.server_cpu_seconds:.1f} s, RSS {run.peak_rss_mb:.0f} MB "
                    f"(each process), load {load:.2f}"
                    + ("" if doc["ok"] else f", NOT OK: exit {run.exit_code}, "
                       f"{run.lines_delivered:,} lines delivered")
                )  # fmt: skip
        report = summarize(runs, args.processes)
        if args.json:
            doc = {"machine": st.machine(lf_source), "lines": lines, "runs": runs, **report}
            print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            print_table(report, lines)
        return 0 if all(r["ok"] for rs in runs.values() for r in rs) else 1


def summarize(runs: dict[int, list[dict[str, Any]]], counts: list[int]) -> dict[str, Any]:
    """Best and median lines/s per process count, and their ratio to the first count."""
    rows = {}
    for n in counts:
        rates = [r["lines_per_s"] for r in runs[n]]
        rows[n] = {
            "best_lines_per_s": max(rates),
            "median_lines_per_s": statistics.median(rates),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs[n]),
            "server_cpu_seconds": statistics.median(r["server_cpu_seconds"] for r in runs[n]),
            "seconds": statistics.median(r["seconds"] for r in runs[n]),
        }
    base = rows[counts[0]]
    for row in rows.values():
        row["speedup_best"] = row["best_lines_per_s"] / base["best_lines_per_s"]
        row["speedup_median"] = row["median_lines_per_s"] / base["median_lines_per_s"]
    return {"by_processes": rows, "target_speedup_2": TARGET_SPEEDUP}


def print_table(report: dict[str, Any], lines: int) -> None:
    """The figures, one row per process count."""
    print(f"\n{lines:,} lines; load average now {os.getloadavg()[0]:.2f}")
    print(
        f"{'processes':>9} {'median s':>9} {'best lines/s':>13} {'median lines/s':>15} "
        f"{'speed-up':>9} {'CPU s':>7} {'servers CPU s':>14}"
    )
    for n, row in report["by_processes"].items():
        print(
            f"{n:>9} {row['seconds']:>9.2f} {row['best_lines_per_s']:>13,.0f} "
            f"{row['median_lines_per_s']:>15,.0f} {row['speedup_median']:>8.2f}× "
            f"{row['cpu_seconds']:>7.1f} {row['server_cpu_seconds']:>14.1f}"
        )
    two = report["by_processes"].get(2)
    if two:
        met = "met" if two["speedup_median"] >= TARGET_SPEEDUP else "NOT met"
        print(f"target ≥ {TARGET_SPEEDUP}× with 2 processes: {met} (median runs)")


if __name__ == "__main__":
    sys.exit(main())
