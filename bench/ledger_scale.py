"""Benchmark: the ledger at fleet scale (claims and checkpoints per second; plans at 10M rows).

Two parts, each optional:

1. **Concurrency** (default): 1, 2, 4 and 8 worker *processes*, each with its own owner id,
   run the object cycle a runner runs -- claim, ``--checkpoints`` checkpoints, done -- on
   distinct objects for ``--seconds`` seconds, against PostgreSQL (a throwaway database on
   the machine's server) and a SQLite file. Prints claims/s, checkpoints/s and done/s.
2. **Size** (``--rows N``): fills a throwaway PostgreSQL ledger with N rows (mostly done,
   across ``--sources`` sources; some pending, active, failed) with ``generate_series``,
   then times every query the ledger issues with ``EXPLAIN (ANALYZE)``, first with the
   indexes of schema v2 only and then with this version's, names any sequential scan of the
   objects table, compares ``status`` over every row with the totals table, and times
   ``prune`` of the oldest tenth.

Usage::

    python bench/ledger_scale.py                          # concurrency, 5 s per point
    python bench/ledger_scale.py --workers 1,8 --seconds 3
    python bench/ledger_scale.py --rows 10000000 --no-concurrency
    PGOPTIONS="-c synchronous_commit=off" python bench/ledger_scale.py --backends postgres
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import re
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import psycopg

from logferry.ledger import open_ledger
from logferry.ledger.base import Status, new_owner_id
from logferry.records import ObjectInfo

ADMIN_URL = os.environ.get("LOGFERRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def _worker(url: str, seconds: float, checkpoints: int, start: Any, out: Any) -> None:
    """One runner process: claim, checkpoint, complete distinct objects until time is up."""
    led = open_ledger(url)
    owner = new_owner_id()
    tag = uuid.uuid4().hex[:8]
    counts = [0, 0, 0]
    start.wait()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        obj = ObjectInfo(f"bench/{tag}/{i:08d}.log", 1000, f"e{i}", 0)
        claim = led.claim("s3://bench", obj, owner, 120)
        assert claim is not None
        counts[0] += 1
        for c in range(1, checkpoints + 1):
            led.checkpoint(claim, c * 100, 10_000, 120)
            counts[1] += 1
        led.complete(claim)
        counts[2] += 1
    led.close()
    out.put(counts)


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def concurrency(url: str, workers: int, seconds: float, checkpoints: int) -> list[float]:
    """Rates (claims, checkpoints, done per second) of ``workers`` processes on ``url``, and
    the machine's CPU use meanwhile (0-1)."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(url, seconds, checkpoints, start, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    time.sleep(1.0 + 0.3 * workers)  # every process imported and connected
    busy0, total0 = _cpu_ticks()
    start.set()
    totals = [0, 0, 0]
    for _ in procs:
        for k, v in enumerate(out.get(timeout=seconds + 120)):
            totals[k] += v
    busy1, total1 = _cpu_ticks()
    for p in procs:
        p.join()
    return [t / seconds for t in totals] + [(busy1 - busy0) / max(1, total1 - total0)]


class Database:
    """A throwaway PostgreSQL database on the machine's server."""

    def __init__(self) -> None:
        self.name = f"logferry_bench_{uuid.uuid4().hex[:10]}"
        self.admin = psycopg.connect(ADMIN_URL, autocommit=True)
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = urlsplit(ADMIN_URL)._replace(path=f"/{self.name}").geturl()

    def drop(self) -> None:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.admin.close()


def run_concurrency(args: argparse.Namespace) -> None:
    counts = [int(w) for w in args.workers.split(",")]
    print(f"\nConcurrency: claim + {args.checkpoints} checkpoints + done per object, "
          f"{args.seconds:g} s per point, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'backend':10} {'workers':>7} {'claims/s':>9} {'checkpoints/s':>14} {'done/s':>8} "
          f"{'CPU busy':>9}")  # fmt: skip
    for backend in args.backends.split(","):
        series: list[tuple[int, float, float]] = []
        for n in counts:
            db = Database() if backend == "postgres" else None
            scratch = tempfile.TemporaryDirectory(prefix="ledger-bench-")
            url = db.url if db else f"sqlite:///{scratch.name}/ledger.db"
            open_ledger(url).close()  # migrated once, before the workers race
            try:
                claims, cps, done, cpu = concurrency(url, n, args.seconds, args.checkpoints)
            finally:
                if db:
                    db.drop()
                scratch.cleanup()
            series.append((n, claims, cpu))
            print(f"{backend:10} {n:7d} {claims:9.0f} {cps:14.0f} {done:8.0f} {cpu:9.0%}",
                  flush=True)  # fmt: skip
        print(_limit(backend, series))


def _limit(backend: str, series: list[tuple[int, float, float]]) -> str:
    """Where the rate stops growing with more workers, and what the CPU use says about why."""
    peak = max(series, key=lambda p: p[1])
    flat = next((a for a, b in itertools.pairwise(series) if b[1] < a[1] * 1.15), peak)
    cpus = os.cpu_count() or 1
    why = (
        f"the CPU: {flat[2]:.0%} of {cpus} cores busy"
        if flat[2] > 0.85
        else f"waiting, not the CPU ({flat[2]:.0%} of {cpus} cores busy): the commit flush"
    )
    return (
        f"  {backend}: flattens at {flat[0]} workers ({flat[1]:.0f} claims/s, "
        f"{flat[1] / series[0][1]:.1f}x one worker; peak {peak[1]:.0f} at {peak[0]}); "
        f"limit: {why}"
    )


# -- size: 10M rows --------------------------------------------------------------------------

_FILL = """
INSERT INTO logferry_objects (source, key, etag, size, last_modified_ms, status, position,
    lines, bytes, attempts, error_class, last_error, owner, lease_until, first_seen, updated,
    done_at, cursor)
SELECT 's3://bucket-' || (i %% %(sources)s) || '/', 'logs/' || (i / 1000) || '/obj-' || i || '.gz',
       md5(i::text), 100000, (%(t0)s + i * %(step)s) * 1000,
       CASE WHEN i %% 2000 = 1 THEN 'failed' WHEN i %% 2000 = 2 THEN 'pending'
            WHEN i %% 20000 = 3 THEN 'active' ELSE 'done' END,
       1000, 1000, 100000, 1,
       CASE WHEN i %% 2000 = 1 THEN 'HTTPError' END, CASE WHEN i %% 2000 = 1 THEN 'boom' END,
       CASE WHEN i %% 20000 = 3 THEN 'host:1:x:y:z' END,
       CASE WHEN i %% 20000 = 3 THEN %(t0)s + 1e9 END,
       %(t0)s + i * %(step)s, %(t0)s + i * %(step)s + 60,
       CASE WHEN i %% 2000 > 3 OR i %% 2000 = 0 THEN %(t0)s + i * %(step)s + 60 END, NULL
FROM generate_series(1, %(rows)s) AS i
"""

_V3_INDEXES = ("logferry_objects_open", "logferry_objects_cursor", "logferry_objects_held")


def _queries(sources: int) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(name, SQL, params) of every query the ledger issues, as PostgresLedger runs it."""
    src = "s3://bucket-7/"
    i = 5_000_007  # an object of source 7
    key, etag = f"logs/{i // 1000}/obj-{i}.gz", None
    keys = [f"logs/{j // 1000}/obj-{j}.gz" for j in range(7, 7 + 1000 * sources, sources)]
    ident = "source = %s AND key = %s AND etag = md5(%s)"
    cols = ("id, source, key, etag, size, status, position, lines, bytes, attempts, "
            "error_class, last_error, owner, first_seen, updated, cursor")  # fmt: skip
    order = " ORDER BY updated DESC, id DESC"
    del etag
    return [
        ("claim (row lock)", f"SELECT status, position, attempts, owner, lease_until, cursor, "
         f"lines, bytes FROM logferry_objects WHERE {ident} FOR UPDATE", (src, key, str(i))),
        ("checkpoint / renew / done / fail", "UPDATE logferry_objects SET position = 1, "
         f"lease_until = 1 WHERE {ident} AND owner = %s", (src, key, str(i), "x")),
        ("lookup 1000 keys", "SELECT key, etag, status, attempts FROM logferry_objects "
         "WHERE source = %s AND key = ANY(%s) ORDER BY updated, id", (src, keys)),
        ("errors / error queue", f"SELECT {cols} FROM logferry_objects WHERE status = 'failed' "
         f"AND status <> 'done'{order}", ()),
        ("errors --source", f"SELECT {cols} FROM logferry_objects WHERE source = %s AND "
         f"status = 'failed' AND status <> 'done'{order}", (src,)),
        ("dashboard: pending", f"SELECT {cols} FROM logferry_objects WHERE status = 'pending' "
         f"AND status <> 'done'{order}", ()),
        ("dashboard: active", f"SELECT {cols} FROM logferry_objects WHERE status = 'active' "
         f"AND status <> 'done'{order}", ()),
        ("entry by id", f"SELECT {cols} FROM logferry_objects WHERE id = %s", (123456,)),
        ("purge one failed", "DELETE FROM logferry_objects WHERE status = 'failed' AND "
         "status <> 'done' AND id = %s", (4001,)),
        ("held elsewhere (tail)", "SELECT key FROM logferry_objects WHERE source = %s AND "
         "etag = %s AND key <> %s AND status = 'active' AND owner IS NOT NULL AND "
         "lease_until > 0 LIMIT 1", (src, "f1", key)),
        ("latest cursor (tail)", "SELECT key, position, cursor FROM logferry_objects WHERE "
         "source = %s AND etag = %s AND cursor IS NOT NULL ORDER BY updated DESC LIMIT 1",
         (src, "f1")),
        ("status: unfinished rows", "SELECT source, status, count(*), sum(lines), sum(bytes), "
         "max(CASE WHEN lines > 0 AND status <> 'failed' THEN updated END) FROM "
         "logferry_objects WHERE status <> 'done' GROUP BY source, status", ()),
        ("status: totals", "SELECT source, sum(done), sum(lines), sum(bytes), max(last_done) "
         "FROM logferry_totals GROUP BY source", ()),
        ("status (v2: every row)", "SELECT source, count(*) FILTER (WHERE status = 'done'), "
         "count(*) FILTER (WHERE status = 'failed'), sum(lines), sum(bytes), max(done_at) "
         "FROM logferry_objects GROUP BY source", ()),
        ("prune batch (20k ids)", "DELETE FROM logferry_objects WHERE id >= %s AND id < %s AND "
         "status = 'done' AND done_at < %s AND last_modified_ms < %s RETURNING source",
         (1, 20001, 2e9, 2e12)),
        ("dead letters", "SELECT id, source FROM logferry_dead_letters ORDER BY id DESC", ()),
    ]  # fmt: skip


def explain(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...]) -> tuple[float, str]:
    """(execution ms, plan text) of one statement, rolled back."""
    with conn.transaction(force_rollback=True):
        rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
    plan = "\n".join(r[0] for r in rows)
    ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))  # type: ignore[union-attr]
    return ms, plan


def _scan(plan: str) -> str:
    if re.search(r"Seq Scan on logferry_objects", plan):
        return "SEQ SCAN"
    found = re.search(r"(Index Only Scan|Index Scan|Bitmap Index Scan)\S* (?:using|on) (\w+)", plan)
    return f"{found.group(1).lower()} {found.group(2)}" if found else "-"


def run_size(args: argparse.Namespace) -> None:
    db = Database()
    try:
        open_ledger(db.url).close()  # this version's schema
        led = open_ledger(db.url)
        led._dead_letter_table()  # made on first use
        led.close()
        conn = psycopg.connect(db.url, autocommit=True)
        for name in _V3_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        t0 = time.time() - 400 * 86400
        started = time.monotonic()
        conn.execute(
            _FILL,
            {"sources": args.sources, "rows": args.rows, "t0": t0, "step": 365 * 86400 / args.rows},
        )
        conn.execute(
            "INSERT INTO logferry_totals SELECT source, 0, count(*), sum(lines), sum(bytes), "
            "max(done_at) FROM logferry_objects WHERE status = 'done' GROUP BY source"
        )
        conn.execute("VACUUM ANALYZE logferry_objects")
        size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('logferry_objects'))")
        print(f"\n{args.rows:,} rows, {args.sources} sources, filled and analyzed in "
              f"{time.monotonic() - started:.0f} s ({size.fetchone()[0]})")  # type: ignore[index]  # fmt: skip
        queries = _queries(args.sources)
        before: dict[str, tuple[float, str]] = {}
        for name, sql, params in queries:
            if "totals" not in name:
                explain(conn, sql, params)  # warm the cache
                before[name] = explain(conn, sql, params)
        started = time.monotonic()
        for name in _V3_INDEXES:
            ddl = {
                "logferry_objects_open": "(status, source) WHERE status <> 'done'",
                "logferry_objects_cursor": "(source, etag) WHERE cursor IS NOT NULL",
                "logferry_objects_held": "(source, etag) WHERE status = 'active'",
            }[name]
            conn.execute(f"CREATE INDEX {name} ON logferry_objects {ddl}")
        print(f"v3 indexes built in {time.monotonic() - started:.1f} s")
        conn.execute("ANALYZE logferry_objects")
        print(f"\n{'query':34} {'v2 ms':>9} {'v3 ms':>9}  plan (v3)")
        for name, sql, params in queries:
            explain(conn, sql, params)
            ms, plan = explain(conn, sql, params)
            old = f"{before[name][0]:9.2f}" if name in before else f"{'':>9}"
            print(f"{name:34} {old} {ms:9.2f}  {_scan(plan)}", flush=True)
            if args.plans:
                print(plan)
        _time_status_and_prune(db.url, args)
        conn.close()
    finally:
        db.drop()


def _time_status_and_prune(url: str, args: argparse.Namespace) -> None:
    led = open_ledger(url)
    started = time.monotonic()
    statuses = led.status()
    print(f"\nstatus() through the ledger: {1000 * (time.monotonic() - started):.1f} ms "
          f"({sum(s.done for s in statuses):,} done)")  # fmt: skip
    started = time.monotonic()
    failed = led.entries(status=Status.FAILED)
    print(f"entries(failed) through the ledger: {1000 * (time.monotonic() - started):.1f} ms "
          f"({len(failed):,} rows)")  # fmt: skip
    before_ms = int((time.time() - 400 * 86400 + 365 * 86400 * args.prune_fraction) * 1000)
    result = led.prune(before_ms)
    print(f"prune of the oldest {args.prune_fraction:.0%}: {result.total:,} rows in "
          f"{result.seconds:.1f} s = {result.total / max(result.seconds, 1e-9):,.0f} rows/s")  # fmt: skip
    started = time.monotonic()
    after = led.status()
    print(f"status() after prune: {1000 * (time.monotonic() - started):.1f} ms, done still "
          f"{sum(s.done for s in after):,}")  # fmt: skip
    led.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="worker process counts")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--checkpoints", type=int, default=4, help="per object")
    parser.add_argument("--backends", default="postgres,sqlite", help="postgres, sqlite or both")
    parser.add_argument("--rows", type=int, default=0, help="size test with this many rows")
    parser.add_argument("--sources", type=int, default=50)
    parser.add_argument("--prune-fraction", type=float, default=0.1)
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--no-concurrency", action="store_true")
    args = parser.parse_args()
    if not args.no_concurrency:
        run_concurrency(args)
    if args.rows:
        run_size(args)


if __name__ == "__main__":
    main()
