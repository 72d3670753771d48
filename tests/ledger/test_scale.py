"""The ledger as it grows: totals, prune and its watermark, retried transactions, plans."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from logferry.ledger import Ledger, SQLiteLedger, Status, open_ledger
from logferry.ledger import postgres as pg_module
from logferry.ledger import sqlite as sqlite_module
from logferry.ledger.sql import SqlLedger
from logferry.records import ObjectInfo

OLD_MS = 1_000_000  # a last-modified time long before any prune


def _ship(led: Ledger, source: str, key: str, modified_ms: int = OLD_MS, lines: int = 10) -> None:
    claim = led.claim(source, ObjectInfo(key, 100, "e-" + key, modified_ms), "me", 60)
    assert claim is not None
    led.checkpoint(claim, lines, 100, 60)
    led.complete(claim)


def _fail(led: Ledger, source: str, key: str) -> None:
    claim = led.claim(source, ObjectInfo(key, 100, "e-" + key, OLD_MS), "me", 60)
    assert claim is not None
    led.fail(claim, "boom", "HTTPError")


def _sql(led: Ledger) -> SqlLedger:
    assert isinstance(led, SqlLedger)
    return led


def _done(led: Ledger, source: str) -> int:
    return next((s.done for s in led.status() if s.source == source), 0)


# -- totals ------------------------------------------------------------------------------


def test_forced_reship_of_a_done_object_is_counted_done_once(ledger: Ledger) -> None:
    _ship(ledger, "s3://a", "k1")
    again = ledger.claim("s3://a", ObjectInfo("k1", 100, "e-k1", OLD_MS), "me", 60, force=True)
    assert again is not None
    assert _done(ledger, "s3://a") == 0
    ledger.checkpoint(again, 10, 100, 60)
    ledger.complete(again)
    (row,) = ledger.status()
    assert (row.done, row.lines, row.bytes) == (1, 10, 100)


def _committed_then_retried(led: SqlLedger) -> None:
    """Every transaction commits, then runs again as a retry after a lost answer would."""
    original = led._atomic

    def atomic(work: Callable[[Any, int], Any], **kw: Any) -> Any:
        original(lambda run, attempt: work(run, 1), **kw)
        return original(lambda run, attempt: work(run, 2), **kw)

    led._atomic = atomic


def test_a_retried_checkpoint_and_done_count_once(ledger: Ledger) -> None:
    claim = ledger.claim("s3://a", ObjectInfo("k", 100, "e", OLD_MS), "me", 60)
    assert claim is not None
    _committed_then_retried(_sql(ledger))
    ledger.checkpoint(claim, 10, 100, 60)
    ledger.complete(claim)
    (row,) = ledger.status()
    assert (row.done, row.lines, row.bytes) == (1, 10, 100)


def test_a_retried_fail_is_not_a_lost_claim(ledger: Ledger) -> None:
    claim = ledger.claim("s3://a", ObjectInfo("k", 100, "e", OLD_MS), "me", 60)
    assert claim is not None
    _committed_then_retried(_sql(ledger))
    ledger.fail(claim, "boom", "HTTPError")
    entry = ledger.get("s3://a", "k", "e")
    assert entry is not None
    assert entry.status == Status.FAILED


def test_a_done_object_taken_over_is_still_a_lost_claim_on_retry(ledger: Ledger) -> None:
    mine = ledger.claim("s3://a", ObjectInfo("k", 100, "e", OLD_MS), "me", 0.01)
    assert mine is not None
    time.sleep(0.05)  # our lease runs out
    theirs = ledger.claim("s3://a", ObjectInfo("k", 100, "e", OLD_MS), "them", 60)
    assert theirs is not None
    ledger.complete(theirs)
    _committed_then_retried(_sql(ledger))
    from logferry.ledger import ClaimLostError

    with pytest.raises(ClaimLostError):
        ledger.complete(mine)


# -- prune -------------------------------------------------------------------------------


@pytest.fixture()
def history(ledger: Ledger) -> Iterator[tuple[SqlLedger, int]]:
    """Old done objects in two sources, one failed, one done object modified later."""
    for i in range(3):
        _ship(ledger, "s3://a", f"old-{i}")
    _ship(ledger, "s3://b", "old-b")
    _fail(ledger, "s3://a", "failed")
    before_ms = int(time.time() * 1000) + 1000
    _ship(ledger, "s3://a", "recent", modified_ms=before_ms + 86_400_000)
    yield _sql(ledger), before_ms


def test_dry_run_counts_and_deletes_nothing(history: tuple[SqlLedger, int]) -> None:
    led, before_ms = history
    result = led.prune(before_ms, dry_run=True)
    assert result.rows == {"s3://a": 3, "s3://b": 1}
    assert len(led.entries()) == 6
    assert led.pruned_before("s3://a") is None


def test_prune_deletes_old_done_rows_only(history: tuple[SqlLedger, int]) -> None:
    led, before_ms = history
    result = led.prune(before_ms, batch=2)
    assert result.rows == {"s3://a": 3, "s3://b": 1}
    assert sorted(e.key for e in led.entries()) == ["failed", "recent"]


def test_pruned_objects_still_count_in_status(history: tuple[SqlLedger, int]) -> None:
    led, before_ms = history
    led.prune(before_ms)
    counts = {s.source: (s.done, s.failed, s.lines) for s in led.status()}
    assert counts == {"s3://a": (4, 1, 40), "s3://b": (1, 0, 10)}


def test_prune_raises_the_watermark_of_each_source(history: tuple[SqlLedger, int]) -> None:
    led, before_ms = history
    led.prune(before_ms - 5000, "s3://b")
    led.prune(before_ms, "s3://b")
    led.prune(before_ms - 5000, "s3://b")  # an earlier time never lowers it
    assert (led.pruned_before("s3://a"), led.pruned_before("s3://b")) == (None, before_ms)


def test_prune_of_one_source_leaves_the_others(history: tuple[SqlLedger, int]) -> None:
    led, before_ms = history
    assert led.prune(before_ms, "s3://b").rows == {"s3://b": 1}
    assert len(led.entries(source="s3://a")) == 5


# -- migration ---------------------------------------------------------------------------


def test_sqlite_v3_ledger_gains_totals_and_indexes(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, script in enumerate(sqlite_module.MIGRATIONS[:3], start=1):
        conn.executescript(script)
        conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    rows = [("s3://a", f"k{i}", "e", "done" if i else "failed", 5, 50, 1.0 + i) for i in range(4)]
    conn.executemany(
        "INSERT INTO objects (source, key, etag, status, lines, bytes, first_seen, updated, "
        "done_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
        [(*r, r[-1]) for r in rows],
    )
    conn.commit()
    conn.close()
    led = SQLiteLedger(path)
    (row,) = led.status()
    indexes = {r[0] for r in led._rows("SELECT name FROM sqlite_master WHERE type = 'index'")}
    versions = [r[0] for r in led._rows("SELECT version FROM schema_version")]
    led.close()
    assert (row.done, row.failed, row.lines, row.bytes) == (3, 1, 20, 200)
    assert row.last_shipped == 4.0
    assert {"objects_open", "objects_cursor", "objects_held"} <= indexes
    assert "objects_source_key" not in indexes
    assert versions == list(range(1, len(sqlite_module.MIGRATIONS) + 1))


def test_postgres_v2_ledger_gains_totals_and_indexes(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        conn.execute("CREATE TABLE logferry_schema_version (version INTEGER NOT NULL)")
        for version, statements in enumerate(pg_module.MIGRATIONS[:2], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO logferry_schema_version VALUES (%s)", (version,))
        for i in range(4):
            conn.execute(
                "INSERT INTO logferry_objects (source, key, etag, status, lines, bytes, "
                "first_seen, updated, done_at) VALUES ('s3://a', %s, 'e', %s, 5, 50, 0, %s, %s)",
                (f"k{i}", "done" if i else "failed", 1.0 + i, 1.0 + i),
            )
    led = open_ledger(pg_url)
    (row,) = led.status()
    indexes = {r[0] for r in _sql(led)._rows("SELECT indexname FROM pg_indexes")}
    led.close()
    assert (row.done, row.failed, row.lines, row.bytes) == (3, 1, 20, 200)
    assert {"logferry_objects_open", "logferry_objects_cursor", "logferry_objects_held"} <= indexes


# -- plans: no query the ledger issues reads the whole objects table ----------------------


def _capture(led: SqlLedger) -> list[tuple[str, tuple[Any, ...]]]:
    """Record every statement ``led`` runs from now on."""
    seen: list[tuple[str, tuple[Any, ...]]] = []
    atomic, rows = led._atomic, led._rows

    def spy_atomic(work: Callable[[Any, int], Any], **kw: Any) -> Any:
        def spied(run: Any, attempt: int) -> Any:
            def record(sql: str, params: Any = ()) -> Any:
                seen.append((sql, tuple(params)))
                return run(sql, params)

            return work(record, attempt)

        return atomic(spied, **kw)

    def spy_rows(sql: str, params: Any = ()) -> Any:
        seen.append((sql, tuple(params)))
        return rows(sql, params)

    led._atomic = spy_atomic
    led._rows = spy_rows
    return seen


def _every_query(led: SqlLedger) -> list[tuple[str, tuple[Any, ...]]]:
    """Run each kind of ledger operation once; the statements they issued on objects."""
    seen = _capture(led)
    src = "s3://bucket-7/"
    led.lookup(src, [f"logs/obj-{i}.gz" for i in range(7, 5000, 20)])
    claim = led.claim(src, ObjectInfo("new.gz", 1, "e", 0), "me", 60)
    assert claim is not None
    led.renew([claim], 60)
    led.checkpoint(claim, 5, 50, 60, cursor="c")
    led.held_elsewhere(src, "e", "other")
    led.latest_cursor(src, "e")
    led.fail(claim, "boom")
    for status in (Status.FAILED, Status.PENDING, Status.ACTIVE):
        led.entries(status=status)
    led.entries(source=src, status=Status.FAILED)
    failed = led.entries(source=src, status=Status.FAILED)[0]
    led.entry(failed.id)
    led.purge_failed([failed.id])
    claim = led.claim(src, ObjectInfo("new2.gz", 1, "e2", 0), "me", 60)
    assert claim is not None
    led.complete(claim)
    led.status()
    led.pruned_before(src)
    led.prune(0, batch=50_000)
    return [
        (sql, params) for sql, params in seen if re.search(r"\bobjects\b|logferry_objects", sql)
    ]


def test_postgres_hot_queries_use_an_index_at_200k_rows(pg_url: str) -> None:
    led = _sql(open_ledger(pg_url))
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO logferry_objects (source, key, etag, size, last_modified_ms, status, "
            "lines, bytes, attempts, first_seen, updated, done_at) "
            "SELECT 's3://bucket-' || (i % 20) || '/', 'logs/obj-' || i || '.gz', md5(i::text), "
            "1, i, CASE WHEN i % 1000 = 1 THEN 'failed' WHEN i % 1000 = 2 THEN 'pending' "
            "ELSE 'done' END, 10, 100, 1, i, i, i FROM generate_series(1, 200000) AS i"
        )
        conn.execute("ANALYZE logferry_objects")
        statements = _every_query(led)
        led.close()
        scans = []
        for sql, params in statements:
            with conn.transaction(force_rollback=True):
                plan = conn.execute("EXPLAIN " + sql.replace("?", "%s"), params).fetchall()
            text = "\n".join(r[0] for r in plan)
            if "Seq Scan on logferry_objects" in text:
                scans.append(f"{sql}\n{text}")
    assert len(statements) > 15
    assert scans == []


def test_sqlite_hot_queries_use_an_index(tmp_path: Path) -> None:
    led = _sql(open_ledger(f"sqlite:///{tmp_path}/l.db"))
    assert isinstance(led, SQLiteLedger)
    conn = led._conn()
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) "
        "INSERT INTO objects (source, key, etag, status, lines, bytes, first_seen, updated, "
        "done_at) SELECT 's3://bucket-' || (i % 20) || '/', 'logs/obj-' || i || '.gz', i, "
        "CASE WHEN i % 1000 = 1 THEN 'failed' ELSE 'done' END, 10, 100, i, i, i FROM n"
    )
    conn.execute("ANALYZE")
    statements = _every_query(led)
    scans = []
    for sql, params in statements:
        plan = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        details = [r[-1] for r in plan]
        if "SCAN objects" in details:
            scans.append(f"{sql}: {details}")
    led.close()
    assert len(statements) > 15
    assert scans == []
