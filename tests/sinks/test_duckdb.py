"""DuckDBSink: schema, typed columns, exactly-once replay, a reader process beside a writer."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from logferry.errors import ConfigError
from logferry.records import Batch
from logferry.sinks import open_sink
from logferry.sinks.duckdb import DDL, DuckDBSink, open_store_readonly, parse_duckdb_url

T0 = 1_700_000_000_000


def api_batch(n: int, *, start: int = 0, key: str = "api.log") -> Batch:
    fields: list[dict[str, Any] | None] = [
        {
            "customer_id": f"cust-{i % 3}",
            "request_path": f"/p/{i % 2}",
            "status_code": 200 if i % 4 else 503,
            "duration": 0.5 + i,
            "success": bool(i % 4),
        }
        for i in range(start, start + n)
    ]
    return Batch(
        "tail", key, start, start + n, [f"line {i}" for i in range(start, start + n)],
        [T0 + i for i in range(start, start + n)], fields, format="api-request",
    )  # fmt: skip


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    con = open_store_readonly(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_urls(tmp_path: Path) -> None:
    assert parse_duckdb_url("duckdb:////abs/x.db") == (Path("/abs/x.db"), False)
    assert parse_duckdb_url("duckdb:///rel.db?index=false") == (Path("rel.db"), False)
    assert parse_duckdb_url("duckdb:///rel.db?index=true") == (Path("rel.db"), True)
    for bad in ("duckdb://x.db", "duckdb:///", "duckdb:///x.db?foo=1"):
        with pytest.raises(ConfigError):
            parse_duckdb_url(bad)
    sink = open_sink(f"duckdb:///{tmp_path}/sub/s.db")
    assert isinstance(sink, DuckDBSink)
    assert (tmp_path / "sub" / "s.db").exists()


def test_schema(tmp_path: Path) -> None:
    DuckDBSink(tmp_path / "s.db")
    cols = rows(
        tmp_path / "s.db",
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_name = 'records' ORDER BY ordinal_position",
    )
    assert cols == [
        ("source", "VARCHAR", "NO"), ("key", "VARCHAR", "NO"), ("position", "BIGINT", "NO"),
        ("ts", "TIMESTAMP WITH TIME ZONE", "NO"), ("line", "VARCHAR", "NO"),
        ("format", "VARCHAR", "YES"), ("customer_id", "VARCHAR", "YES"),
        ("request_path", "VARCHAR", "YES"), ("status_code", "INTEGER", "YES"),
        ("duration", "DOUBLE", "YES"), ("success", "BOOLEAN", "YES"),
    ]  # fmt: skip
    # No index and no primary key by default: both cost more than the insert itself.
    assert rows(tmp_path / "s.db", "SELECT index_name FROM duckdb_indexes()") == []
    assert rows(
        tmp_path / "s.db",
        "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'",
    ) == [(0,)]
    DuckDBSink(f"duckdb:///{tmp_path}/i.db?index=true")
    assert rows(tmp_path / "i.db", "SELECT index_name FROM duckdb_indexes()") == [
        ("records_customer_ts",)
    ]


def test_typed_columns_and_utc(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "s.db")
    sink.write(api_batch(4, start=10))
    got = rows(
        tmp_path / "s.db",
        "SET TimeZone = 'America/New_York'; SELECT source, key, position, epoch_ms(ts), line, format, customer_id, request_path, status_code, duration, success FROM records ORDER BY position",
    )
    assert got[0] == (
        "tail",
        "api.log",
        10,
        T0 + 10,
        "line 10",
        "api-request",
        "cust-1",
        "/p/0",
        200,
        10.5,
        True,
    )
    assert got[2][8:] == (503, 12.5, False)


def test_plain_records_leave_typed_columns_null(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "s.db")
    sink.write(Batch("dir", "a.log", 0, 2, ["x", "y"], [T0, T0], None, format="lines"))
    sink.write(
        Batch("dir", "b.log", 0, 2, ["x", "y"], [T0, T0], [None, {"level": "info"}], format="json")
    )
    got = rows(
        tmp_path / "s.db",
        "SELECT count(*), count(customer_id), count(status_code), count(duration), count(success) FROM records",
    )
    assert got == [(4, 0, 0, 0, 0)]


def test_replay_is_exactly_once(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "s.db")
    sink.write(api_batch(100))
    sink.write(api_batch(50, start=50))  # overlapping replay
    batch = api_batch(100, start=100)
    sink.prepare(batch)
    sink.write(batch)
    sink.write(api_batch(100, key="other.log"))  # same positions, other partition
    assert rows(
        tmp_path / "s.db", "SELECT count(*), count(DISTINCT (key, position)) FROM records"
    ) == [(300, 300)]


def test_replay_fills_only_the_gaps(tmp_path: Path) -> None:
    # A range refused earlier (error queue) and drained later lands between covered ones.
    sink = DuckDBSink(tmp_path / "s.db")
    sink.write(api_batch(10, start=0))
    sink.write(api_batch(10, start=20))
    sink.write(api_batch(30, start=0))  # replay over both, filling 10-20 and 30-30
    sink.write(api_batch(30, start=0))  # and once more: nothing new
    got = rows(
        tmp_path / "s.db",
        "SELECT count(*), count(DISTINCT position), min(position), max(position) FROM records",
    )
    assert got == [(30, 30, 0, 29)]
    assert sink.counters()["transactions"] == 4
    sink.write(api_batch(10, start=30))  # in order: extends the range before it, no new row
    sink.write(api_batch(10, start=40))
    ranges = rows(tmp_path / "s.db", 'SELECT start, "end" FROM ingested ORDER BY start, "end"')
    assert len(ranges) == 3  # as many rows as before the two batches
    assert set().union(*(range(a, b) for a, b in ranges)) == set(range(50))
    assert rows(tmp_path / "s.db", "SELECT count(*) FROM records") == [(50,)]


def test_store_with_primary_key_still_accepts_batches(tmp_path: Path) -> None:
    # Stores made before the ``ingested`` table keyed records by (source, key, position).
    con = duckdb.connect(str(tmp_path / "old.db"))
    con.execute(
        DDL.split(";")[0].replace(
            "success BOOLEAN", "success BOOLEAN, PRIMARY KEY (source, key, position)"
        )
    )
    con.execute(
        "INSERT INTO records (source, key, position, ts, line) SELECT 'tail', 'api.log', range, now(), 'old' FROM range(5)"
    )
    con.close()
    sink = DuckDBSink(tmp_path / "old.db")
    sink.write(api_batch(10))
    assert rows(
        tmp_path / "old.db", "SELECT count(*), count(*) FILTER (line = 'old') FROM records"
    ) == [(10, 5)]
    # The rollups count only the rows the insert added, not the 5 the key turned away.
    sink.close()
    assert rows(tmp_path / "old.db", "SELECT sum(total) FROM rollup_days") == [(5,)]
    assert rows(tmp_path / "old.db", "SELECT records FROM rollup_state") == [(10,)]


def test_replays_and_late_rows_count_once_in_the_rollups(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "s.db", settle_every=0)
    sink.write(api_batch(100, start=100))
    sink.write(api_batch(200))  # a replay over the first batch, and rows before it
    sink.write(api_batch(50, start=20))
    sink.close()
    assert rows(
        tmp_path / "s.db",
        "SELECT sum(total), sum(successful), sum(n_duration), count(*) FILTER (NOT settled) "
        "FROM rollup_days",
    ) == [(200, 150, 200, 0)]
    assert rows(tmp_path / "s.db", "SELECT sum(n) FROM rollup_latency") == [(200,)]


def test_numpy_columns_are_stored_as_typed(tmp_path: Path) -> None:
    import numpy as np

    sink = DuckDBSink(tmp_path / "s.db")
    batch = Batch(
        "tail", "np.log", 0, 3, ["a", "b", "c"], [T0, T0 + 1, T0 + 2], format="api-request"
    )
    batch.columns = {
        "customer_id": np.array(["c1", "c2", "c1"], dtype=object),
        "status_code": np.array([200, 404, 503], dtype=np.int16),
        "duration": np.array([0.5, 0.25, 1e-06]),
        "success": np.array([True, False, False]),
    }
    sink.write(batch)
    got = rows(
        tmp_path / "s.db",
        "SELECT customer_id, request_path, status_code, duration, success FROM records ORDER BY position",
    )
    assert got == [
        ("c1", None, 200, 0.5, True),
        ("c2", None, 404, 0.25, False),
        ("c1", None, 503, 1e-06, False),
    ]


def _writer(path: str, batches: int) -> None:
    sink = DuckDBSink(path)
    for b in range(batches):
        sink.write(api_batch(2000, start=b * 2000))


def _reader(path: str, until: float, out: Any) -> None:
    queries = errors = 0
    while time.monotonic() < until:
        try:
            con = open_store_readonly(path, timeout=20)
            try:
                con.execute(
                    "SELECT customer_id, count(*), avg(duration) FROM records GROUP BY 1"
                ).fetchall()
            finally:
                con.close()
            queries += 1
        except duckdb.Error as exc:  # pragma: no cover - the failure this test guards against
            errors += 1
            out.put(repr(exc))
    out.put((queries, errors))


def test_reader_process_while_writer_process_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    DuckDBSink(path)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    writer = ctx.Process(target=_writer, args=(path, 60))
    reader = ctx.Process(target=_reader, args=(path, time.monotonic() + 6, out))
    writer.start()
    reader.start()
    writer.join(120)
    reader.join(120)
    assert writer.exitcode == 0
    assert reader.exitcode == 0
    result = out.get(timeout=5)
    assert isinstance(result, tuple), result
    queries, errors = result
    assert errors == 0
    assert queries > 5
    assert rows(Path(path), "SELECT count(*) FROM records") == [(120_000,)]
