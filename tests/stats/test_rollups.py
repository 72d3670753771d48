"""Rollups against the exact query: same counts, median and p99 within the sketch's 1 %.

Rows go through the DuckDB sink as the pipeline writes them (typed NumPy columns), with
ties, single-row days, days with only failures, late rows for old days, replays, a failed
batch, rows without a duration and hostile durations. Answers read before, between and after
folds, and after a kill -9, equal those of rollups rebuilt from every row.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import shutil
import signal
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from fastapi.testclient import TestClient

from logferry.errors import FatalSinkError
from logferry.records import Batch
from logferry.sinks.duckdb import DuckDBSink, open_store_readonly
from logferry.stats import rollups
from logferry.stats.app import create_app
from logferry.stats.queries import AllCustomersStats, CustomerStats, DuckDBStats

FIRST = date(2026, 3, 1)
LAST = date(2026, 3, 6)
DAY_MS = 86_400_000
# Sizes around the rank edge cases: 1, 2, even/odd, n mod 100 in 51-99 and not.
SIZES = (1, 2, 3, 4, 51, 99, 100, 101, 151, 199, 250)


def _day_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _rows(seed: int, day: date, customers: int = 6) -> dict[str, np.ndarray]:
    """One day's rows for every customer, each with its own shape of data."""
    rng = np.random.default_rng(seed)
    parts: list[dict[str, np.ndarray]] = []
    for c in range(customers):
        n = int(rng.choice(SIZES))
        status = np.where(rng.random(n) < 0.9, 200, 503).astype(np.int16)
        duration = np.exp(rng.normal(np.log(0.08), 0.8, n))
        if c == 0:
            duration = np.round(duration, 2)  # many ties, zeros among them
        elif c == 1:
            status[:] = 500  # a day with only failures
        elif c == 2:
            n, status, duration = 1, status[:1], duration[:1]  # single-row days
        parts.append(
            {
                "customer_id": np.array([f"cust_{c}"] * n, dtype=object),
                "status_code": status,
                "duration": duration,
                "success": (status >= 200) & (status < 400),
                "ts": _day_ms(day) + rng.integers(0, DAY_MS, n),
            }
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _batch(rows: dict[str, np.ndarray], start: int, key: str = "api.log") -> Batch:
    n = len(rows["ts"])
    batch = Batch(
        "tail", key, start, start + n, [f"line {i}" for i in range(start, start + n)],
        [int(t) for t in rows["ts"]], format="api-request",
    )  # fmt: skip
    batch.columns = {k: v for k, v in rows.items() if k != "ts"}
    return batch


def _fill(sink: DuckDBSink) -> None:
    """Days written newest first, so most of them arrive late; with replays in between."""
    position = 0
    for i, day in enumerate(reversed([date(2026, 3, d) for d in range(1, 7)])):
        rows = _rows(i, day)
        n = len(rows["ts"])
        half = n // 2
        first = {k: v[:half] for k, v in rows.items()}
        sink.write(_batch(first, position))
        sink.write(_batch(rows, position))  # replays the first half, adds the rest
        sink.write(_batch(first, position))  # nothing new
        position += n
    # Late rows for the first day again, in another partition, after everything else.
    sink.write(_batch(_rows(99, FIRST), 0, key="late.log"))


def assert_close(fast: AllCustomersStats, exact: AllCustomersStats) -> None:
    """Counts equal, average equal up to rounding, median and p99 within the sketch's error."""
    assert exact.latency_method == "exact"
    assert fast.latency_method == "ddsketch-1%"
    assert [c.customer_id for c in fast.customers] == [c.customer_id for c in exact.customers]
    for f, e in zip(fast.customers, exact.customers, strict=True):
        assert [d.date for d in f.days] == [d.date for d in e.days]
        for fs, es in zip([*f.days, f.total], [*e.days, e.total], strict=True):
            for key in ("total_requests", "successful_requests", "failed_requests"):
                assert getattr(fs, key) == getattr(es, key), key
            assert fs.uptime_percent == pytest.approx(es.uptime_percent, rel=1e-12)
            assert fs.avg_latency == pytest.approx(es.avg_latency, rel=1e-9, nan_ok=True)
            for key in ("median_latency", "p99_latency"):
                want, got = getattr(es, key), getattr(fs, key)
                if want is None or math.isnan(want) or math.isinf(want) or want == 0:
                    assert got == pytest.approx(want, nan_ok=True), key
                else:
                    assert abs(got - want) <= rollups.ALPHA * abs(want) * (1 + 1e-9), key


def _one(path: Path, sql: str) -> Any:
    con = open_store_readonly(path)
    try:
        row = con.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        con.close()


def _unsettled(path: Path) -> int:
    return int(_one(path, "SELECT count(*) FROM rollup_days WHERE NOT settled"))


def _unfolded(path: Path) -> int:
    """Rows of ``records`` past the rollups' watermark."""
    return int(
        _one(
            path,
            "SELECT count(*) FROM records WHERE rowid >= (SELECT next_rowid FROM rollup_watermark)",
        )
    )


def assert_same(got: AllCustomersStats, want: AllCustomersStats) -> None:
    """Two rollup answers over the same rows: equal, the average up to summation order."""
    assert got.latency_method == want.latency_method == "ddsketch-1%"
    assert got.model_dump(exclude={"customers"}) == want.model_dump(exclude={"customers"})
    assert len(got.customers) == len(want.customers)
    for g, w in zip(got.customers, want.customers, strict=True):
        assert_same_customer(g, w)


def assert_same_customer(got: CustomerStats, want: CustomerStats) -> None:
    """One customer's rollup answers: equal, the average up to summation order."""
    assert got.customer_id == want.customer_id
    assert [d.date for d in got.days] == [d.date for d in want.days], got.customer_id
    for gs, ws in zip([*got.days, got.total], [*want.days, want.total], strict=True):
        assert gs.model_dump(exclude={"avg_latency"}) == ws.model_dump(exclude={"avg_latency"})
        assert gs.avg_latency == pytest.approx(ws.avg_latency, rel=1e-12, nan_ok=True)


def rebuilt(path: Path, tmp_path: Path) -> AllCustomersStats:
    """The rollup answer of a copy of the store whose rollups are rebuilt from every row."""
    copy = tmp_path / "rebuilt.db"
    copy.unlink(missing_ok=True)
    shutil.copy(path, copy)
    con = duckdb.connect(str(copy))
    con.execute("DROP TABLE rollup_state")
    con.close()
    DuckDBSink(copy).close()
    return DuckDBStats(str(copy)).all_stats(FIRST, LAST)


def test_rollups_agree_with_exact_query_folded_settled_or_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path, settle_every=math.inf)
    _fill(sink)
    store = DuckDBStats(str(path))
    # Nothing folded yet: the query aggregates every row past the watermark itself.
    assert _unfolded(path) == _one(path, "SELECT count(*) FROM records")
    exact = store.all_stats(FIRST, LAST, exact=True)
    assert len(exact.customers) == 6
    assert sum(c.total.total_requests for c in exact.customers) > 1000
    unfolded = store.all_stats(FIRST, LAST)
    assert_close(unfolded, exact)
    # Folded but not settled: days read from their appended sketch rows.
    with sink._lock:
        con = sink._connection()
        con.execute("BEGIN TRANSACTION")
        rollups.fold(con)
        con.execute("COMMIT")
        sink._release()
    assert _unfolded(path) == 0
    assert _unsettled(path) > 0
    assert_same(store.all_stats(FIRST, LAST), unfolded)
    sink.close()  # settles
    assert _unsettled(path) == 0
    assert_same(store.all_stats(FIRST, LAST), unfolded)
    assert_same(rebuilt(path, tmp_path), unfolded)
    # Sub-ranges and one customer agree too.
    mid = date(2026, 3, 3)
    assert_close(store.all_stats(mid, mid), store.all_stats(mid, mid, exact=True))
    one = store.customer_stats("cust_0", FIRST, LAST)
    assert one.latency_method == "ddsketch-1%"
    assert_same_customer(
        one, next(c for c in store.all_stats(FIRST, LAST).customers if c.customer_id == "cust_0")
    )


def test_many_small_batches_folded_as_they_come(tmp_path: Path) -> None:
    """Folds before most batches (settle_every=0), answers checked between them."""
    rng = np.random.default_rng(7)
    path = tmp_path / "s.db"
    sink = DuckDBSink(path, settle_every=0)
    store = DuckDBStats(str(path))
    position = 0
    for i in range(45):
        day = date(2026, 3, int(rng.integers(1, 7)))
        rows = _rows(int(rng.integers(0, 1000)), day, customers=int(rng.integers(1, 7)))
        take = int(rng.integers(1, 40))
        rows = {k: v[:take] for k, v in rows.items()}
        sink.write(_batch(rows, position))
        position += len(rows["ts"])
        if i % 15 == 14:
            assert _unfolded(path) > 0  # the last batch waits for the next fold
            assert_close(store.all_stats(FIRST, LAST), store.all_stats(FIRST, LAST, exact=True))
    before_close = store.all_stats(FIRST, LAST)
    sink.close()
    assert _unfolded(path) == 0
    assert_same(store.all_stats(FIRST, LAST), before_close)
    assert_same(rebuilt(path, tmp_path), before_close)


def test_fold_midway_then_more_rows_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = DuckDBStats(str(path))
    first = DuckDBSink(path, settle_every=math.inf)
    first.write(_batch(_rows(1, FIRST), 0))
    first.write(_batch(_rows(2, LAST), 10_000))
    first.close()  # folds and settles these two
    assert _unfolded(path) == 0
    second = DuckDBSink(path, settle_every=math.inf)
    second.write(_batch(_rows(3, FIRST), 20_000))  # a late day: settled rows + unfolded rows
    second.write(_batch(_rows(4, date(2026, 3, 4)), 30_000))
    assert _unfolded(path) > 0
    second._release()
    mixed = store.all_stats(FIRST, LAST)
    assert_close(mixed, store.all_stats(FIRST, LAST, exact=True))
    assert_same(rebuilt(path, tmp_path), mixed)
    second.close()
    assert_same(store.all_stats(FIRST, LAST), mixed)


def test_settling_while_writing_keeps_the_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path, settle_every=0)  # settles in every batch's transaction
    _fill(sink)
    store = DuckDBStats(str(path))
    assert _unsettled(path) == 0
    assert_close(store.all_stats(FIRST, LAST), store.all_stats(FIRST, LAST, exact=True))
    sink.close()


def test_a_failed_batch_leaves_rows_and_rollups_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path, settle_every=0)
    sink.write(_batch(_rows(1, FIRST), 0))
    store = DuckDBStats(str(path))
    before = store.all_stats(FIRST, LAST)
    original = rollups._append

    def crash(*args: Any) -> None:
        original(*args)  # the delta is appended, the watermark not moved yet
        raise duckdb.IOException("disk gone between the rollups and the watermark")

    monkeypatch.setattr(rollups, "_append", crash)
    second = _rows(2, LAST)
    with pytest.raises(Exception, match="disk gone"):
        sink.write(_batch(second, 1000))
    monkeypatch.undo()
    assert _one(path, "SELECT sum(total) FROM rollup_days") is None  # nothing folded
    assert_same(store.all_stats(FIRST, LAST), before)
    sink.write(_batch(second, 1000))  # the retry lands once, in rows and rollups
    sink.close()
    assert_close(store.all_stats(FIRST, LAST), store.all_stats(FIRST, LAST, exact=True))
    assert_same(rebuilt(path, tmp_path), store.all_stats(FIRST, LAST))


def test_fold_refuses_to_run_after_an_insert_in_its_transaction(tmp_path: Path) -> None:
    """Uncommitted rows carry provisional row ids: a watermark past them would skip rows."""
    path = tmp_path / "s.db"
    DuckDBSink(path).close()
    con = duckdb.connect(str(path))
    con.execute("BEGIN TRANSACTION")
    con.execute(
        "INSERT INTO records SELECT 'd', 'k', 0, TIMESTAMPTZ '2026-03-02 10:00:00+00', "
        "'', 'api-request', 'c', '/', 200, 0.25, true"
    )
    with pytest.raises(RuntimeError, match="after an insert"):
        rollups.fold(con)
    con.execute("ROLLBACK")
    con.close()


def _crashing_writer(path: str, fold_crash: bool) -> None:
    """Commit batches, then die by SIGKILL: after the commits, or inside a fold."""
    sink = DuckDBSink(path, settle_every=0 if fold_crash else math.inf)
    position = 0
    for i, day in enumerate([FIRST, date(2026, 3, 2), FIRST, LAST]):
        rows = _rows(10 + i, day)
        sink.write(_batch(rows, position))
        position += len(rows["ts"])
    if fold_crash:
        original = rollups._append

        def die(*args: Any) -> None:
            original(*args)
            os.kill(os.getpid(), signal.SIGKILL)

        rollups._append = die  # type: ignore[assignment]
        sink.write(_batch(_rows(20, LAST), position))  # its fold dies half-way
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("fold_crash", [False, True], ids=["before-fold", "inside-fold"])
def test_kill_9_loses_nothing_and_counts_nothing_twice(tmp_path: Path, fold_crash: bool) -> None:
    path = tmp_path / "s.db"
    child = mp.get_context("spawn").Process(target=_crashing_writer, args=(str(path), fold_crash))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    store = DuckDBStats(str(path))
    exact = store.all_stats(FIRST, LAST, exact=True)
    assert sum(c.total.total_requests for c in exact.customers) > 100
    # Read-only, straight after the crash: rollups plus the rows they do not cover yet.
    after_crash = store.all_stats(FIRST, LAST)
    assert_close(after_crash, exact)
    assert _unfolded(path) > 0
    DuckDBSink(path).close()  # the next writer folds what the crash left
    assert _unfolded(path) == 0
    typed = "SELECT count(*) FROM records WHERE customer_id IS NOT NULL AND status_code IS NOT NULL"
    assert _one(path, "SELECT sum(total) FROM rollup_days") == _one(path, typed)
    assert _one(path, "SELECT records FROM rollup_state") == _one(
        path, "SELECT count(*) FROM records"
    )
    assert_same(store.all_stats(FIRST, LAST), after_crash)
    assert_same(rebuilt(path, tmp_path), after_crash)


def test_rows_added_behind_the_sinks_back_are_counted_deleted_ones_mean_exact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path)
    _fill(sink)
    sink.close()
    store = DuckDBStats(str(path))
    # An older logferry (or a hand) adds rows: they are past the watermark, so counted.
    con = duckdb.connect(str(path))
    con.execute(
        "INSERT INTO records SELECT 'old', 'x', range, TIMESTAMPTZ '2026-03-02 10:00:00+00', "
        "'', 'api-request', 'cust_9', '/', 200, 0.25, true FROM range(5)"
    )
    con.close()
    added = store.all_stats(FIRST, LAST)
    assert "cust_9" in [c.customer_id for c in added.customers]
    assert_close(added, store.all_stats(FIRST, LAST, exact=True))
    # Rows deleted below the watermark: the rollups cannot be trusted, the answer is exact.
    con = duckdb.connect(str(path))
    con.execute(
        "DELETE FROM records WHERE rowid IN "
        "(SELECT rowid FROM records WHERE customer_id = 'cust_1' LIMIT 3)"
    )
    con.close()
    stale = store.all_stats(FIRST, LAST)
    assert stale.latency_method == "exact"
    DuckDBSink(path).close()  # a writer rebuilds them
    assert_close(store.all_stats(FIRST, LAST), store.all_stats(FIRST, LAST, exact=True))
    # Rollups of another layout (an older logferry rebuilt them its way) answer exactly, and
    # the next writer rebuilds them in this one.
    con = duckdb.connect(str(path))
    con.execute("UPDATE rollup_state SET version = 1")
    con.close()
    assert store.all_stats(FIRST, LAST).latency_method == "exact"
    DuckDBSink(path).close()
    assert store.all_stats(FIRST, LAST).latency_method == "ddsketch-1%"
    # A store without any rollup tables answers exactly, as before.
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE rollup_state")
    con.close()
    assert store.all_stats(FIRST, LAST).latency_method == "exact"


def test_rows_without_duration_and_hostile_durations(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path)
    ts = _day_ms(FIRST) + 1000
    durations = [None, 0.0, 1e-12, -0.5, 0.3, 0.3, math.inf, 2.0, None, 0.3]
    fields: list[dict[str, Any] | None] = [
        {"customer_id": "odd", "status_code": 200, "duration": d, "success": True}
        for d in durations
    ]
    fields += [
        {"customer_id": "nodur", "status_code": 500, "duration": None, "success": False},
        {"customer_id": None, "status_code": 200, "duration": 1.0, "success": True},
        {"customer_id": "nostatus", "status_code": None, "duration": 1.0, "success": True},
        None,
    ]
    n = len(fields)
    sink.write(Batch("dir", "odd.json", 0, n, ["x"] * n, [ts] * n, fields, format="json"))
    sink.write(
        Batch("dir", "nan.json", 0, 1, ["x"], [ts],
              [{"customer_id": "nan", "status_code": 200, "duration": "nan"}], format="json")
    )  # fmt: skip
    sink.close()
    store = DuckDBStats(str(path))
    fast, exact = store.all_stats(FIRST, FIRST), store.all_stats(FIRST, FIRST, exact=True)
    assert [c.customer_id for c in exact.customers] == ["nan", "nodur", "odd"]
    assert_close(fast, exact)
    nodur = fast.customers[1].total
    assert (nodur.total_requests, nodur.median_latency, nodur.avg_latency) == (1, None, None)


@pytest.mark.parametrize("seed", range(3))
def test_random_groups_within_error(tmp_path: Path, seed: int) -> None:
    """Many group sizes and spreads, settled in a few steps, against the exact query."""
    rng = np.random.default_rng(seed)
    path = tmp_path / "s.db"
    sink = DuckDBSink(path, settle_every=0)
    position = 0
    for _ in range(4):
        day = date(2026, 3, int(rng.integers(1, 7)))
        n = int(rng.integers(1, 3000))
        status = rng.choice([200, 301, 404, 500], n).astype(np.int16)
        rows = {
            "customer_id": np.array([f"c{x}" for x in rng.integers(0, 20, n)], dtype=object),
            "status_code": status,
            "duration": np.exp(rng.normal(-2, float(rng.uniform(0.1, 3)), n)),
            "success": status < 400,
            "ts": _day_ms(day) + rng.integers(0, DAY_MS, n),
        }
        sink.write(_batch(rows, position))
        position += n
    sink.close()
    store = DuckDBStats(str(path))
    assert_close(store.all_stats(FIRST, LAST), store.all_stats(FIRST, LAST, exact=True))


def test_api_says_which_method_and_keeps_the_exact_path(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sink = DuckDBSink(path)
    _fill(sink)
    sink.close()
    params = {"from_date": str(FIRST), "to_date": str(LAST)}
    with TestClient(create_app(f"duckdb:///{path}")) as client:
        fast = client.get("/customers/stats", params=params).json()
        exact = client.get("/customers/stats", params={**params, "exact": "true"}).json()
        assert (fast["latency_method"], exact["latency_method"]) == ("ddsketch-1%", "exact")
        assert_close(AllCustomersStats(**fast), AllCustomersStats(**exact))
        one = client.get("/customers/cust_3/stats", params={**params, "exact": "true"}).json()
        assert one["latency_method"] == "exact"
        assert client.get("/customers/cust_3/stats", params=params).json()["latency_method"] == (
            "ddsketch-1%"
        )
        assert client.get("/customers/nobody/stats", params=params).status_code == 404
        empty = client.get(
            "/customers/cust_3/stats", params={"from_date": "2020-01-01", "to_date": "2020-01-02"}
        ).json()
        assert (empty["days"], empty["latency_method"]) == ([], "ddsketch-1%")
        spec = client.get("/openapi.json").json()
        assert "DDSketch" in str(spec)
        assert {"exact"} <= {
            p["name"] for p in spec["paths"]["/customers/stats"]["get"]["parameters"]
        }


def test_ranks_match_quantile_disc() -> None:
    """The sketch's ranks are quantile_disc's: checked on distinct values, one per bucket."""
    con = duckdb.connect()
    for n in [*range(1, 300), 1000, 1051, 1099]:
        # Values 1.05^k are in distinct buckets (γ ≈ 1.0202), so each is read back within 1 %.
        got = con.execute(
            f"""WITH v AS (SELECT pow(1.05, range) AS d FROM range({n})),
                s AS (SELECT 'c' AS c, {rollups.bucket_sql("d")} AS bucket, count(*) AS n
                      FROM v GROUP BY ALL)
            SELECT q.median_latency, q.p99_latency, e.median, e.p99
            FROM ({rollups.quantiles_sql("s", "c")}) AS q,
                 (SELECT (quantile_disc(d, 0.5) + quantile_disc(d, 0.5 + 1e-9)) / 2 AS median,
                         quantile_disc(d, 0.99) AS p99 FROM v) AS e"""
        ).fetchone()
        assert got is not None
        assert got[0] == pytest.approx(got[2], rel=rollups.ALPHA), n
        assert got[1] == pytest.approx(got[3], rel=rollups.ALPHA), n


def test_bad_duration_in_a_batch_does_not_fail_the_sink(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "s.db")
    try:
        sink.write(
            Batch("dir", "a.json", 0, 1, ["x"], [_day_ms(FIRST)],
                  [{"customer_id": "c", "status_code": 200, "duration": "-inf"}], format="json")
        )  # fmt: skip
    except FatalSinkError as exc:  # pragma: no cover - the failure this test guards against
        pytest.fail(str(exc))
    finally:
        sink.close()
