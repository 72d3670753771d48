"""Daily per-customer rollups of the DuckDB store, kept in step with ``records`` as rows land.

Tables, written in the same transaction as the rows they summarise, so a replay, a crash or
a concurrent reader never sees them disagree with ``records``:

- ``rollup_days (customer_id, day, total, successful, n_duration, sum_duration, settled,
  median_latency, p99_latency)``: exact counts and duration sums per customer and UTC day
  (``day`` = epoch days, as in the exact query).
- ``rollup_latency (customer_id, day, bucket, n)``: a DDSketch of the durations per customer
  and day, stored as rows. Bucket ``i`` holds the durations in ``(γ^(i-1), γ^i]`` with
  ``γ = (1 + α) / (1 - α)``, ``α = 1 %``; a quantile read from it is the bucket's midpoint
  ``2γ^i / (γ + 1)``, within 1 % of the exact order statistic of the same rank. Counts are
  exact, so sketches of several days merge by adding counts: range totals are as accurate
  as single days.
- ``rollup_state (version, records)``: the layout, and how many ``records`` rows the rollups
  account for.

Each batch *appends* its delta (a few rows per customer and day, one per latency bucket):
an append costs a fraction of an upsert in DuckDB. Its days become unsettled. Now and then
(:func:`settle`, run by the sink) the unsettled days are compacted to one row per key and
their median and p99 stored, so readers normally find every number precomputed; a reader
that meets unsettled days sums their rows and reads their quantiles from the sketch itself,
with the same result.

A reader trusts the rollups only when ``rollup_state.records`` equals ``count(*)`` of
``records``; otherwise (a store written by an older logferry, rows deleted by hand) it falls
back to the exact query, and the next writer rebuilds them.

Bucket keys are one ordered integer: ``0`` for |d| ≤ 1 ns (read back as 0), ``±(OFFSET + i)``
for positive and negative durations, ``±INF_KEY`` for ±infinity and ``NAN_KEY`` for NaN
(DuckDB sorts NaN above everything), so the ranks agree with the exact query's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import numpy as np

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
VERSION = 1

OFFSET = 100_000
INF_KEY = 200_000
NAN_KEY = 300_000
_LN_GAMMA = repr(math.log(GAMMA))
_MIN = "1e-9"

DDL = """
CREATE TABLE IF NOT EXISTS rollup_days (
    customer_id VARCHAR NOT NULL,
    day BIGINT NOT NULL,
    total BIGINT NOT NULL,
    successful BIGINT NOT NULL,
    n_duration BIGINT NOT NULL,
    sum_duration DOUBLE NOT NULL,
    settled BOOLEAN NOT NULL,
    median_latency DOUBLE,
    p99_latency DOUBLE
);
CREATE TABLE IF NOT EXISTS rollup_latency (
    customer_id VARCHAR NOT NULL,
    day BIGINT NOT NULL,
    bucket INTEGER NOT NULL,
    n BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollup_state (version INTEGER NOT NULL, records BIGINT NOT NULL)
"""


def bucket_sql(d: str) -> str:
    """The SQL bucket key of the DOUBLE expression ``d`` (see the module docstring)."""
    log = f"ceil(ln(abs({d})) / {_LN_GAMMA})::INTEGER"
    return (
        f"CASE WHEN isnan({d}) THEN {NAN_KEY} "
        f"WHEN isinf({d}) THEN sign({d})::INTEGER * {INF_KEY} "
        f"WHEN {d} > {_MIN} THEN {OFFSET} + {log} "
        f"WHEN {d} < -{_MIN} THEN -({OFFSET} + {log}) "
        "ELSE 0 END"
    )


def value_sql(b: str) -> str:
    """The SQL duration a bucket key ``b`` stands for: the bucket's midpoint (NULL stays NULL)."""
    return (
        f"CASE WHEN {b} = 0 THEN 0.0 "
        f"WHEN {b} = {NAN_KEY} THEN 'nan'::DOUBLE "
        f"WHEN abs({b}) = {INF_KEY} THEN sign({b}) * 'inf'::DOUBLE "
        f"ELSE sign({b}) * 2 * pow({GAMMA!r}, abs({b}) - {OFFSET}) / ({GAMMA!r} + 1) END"
    )


def quantiles_sql(source: str, keys: str) -> str:
    """SQL: per group of ``keys``, median and p99 read from the sketch rows of ``source``.

    ``source`` has the columns ``keys``, ``bucket`` (unique within a group) and ``n``. The
    ranks are the exact query's, with ``m`` the group's non-NULL durations (``quantile_disc``
    skips NULLs): ``ceil(m/2)`` and ``floor(m/2) + 1`` for the median, ``ceil(0.99·m)`` for p99.
    """
    return f"""
    SELECT {keys},
           ({value_sql("b1")} + {value_sql("b2")}) / 2 AS median_latency,
           {value_sql("b3")} AS p99_latency
    FROM (
        SELECT {keys},
               min(bucket) FILTER (WHERE cum_n >= (group_n + 1) // 2) AS b1,
               min(bucket) FILTER (WHERE cum_n >= group_n // 2 + 1) AS b2,
               min(bucket) FILTER (WHERE cum_n >= (group_n * 99 + 99) // 100) AS b3
        FROM (
            SELECT {keys}, bucket,
                   sum(n) OVER (PARTITION BY {keys} ORDER BY bucket) AS cum_n,
                   sum(n) OVER (PARTITION BY {keys}) AS group_n
            FROM {source}
        )
        GROUP BY {keys}
    )"""


# The typed request rows of a source, as the exact query filters them, summed per customer,
# day and bucket (NULL for a NULL duration).
_DELTA = f"""
SELECT customer_id, day, {bucket_sql("duration")} AS bucket, count(*) AS total,
       count(*) FILTER (WHERE success) AS successful, count(duration) AS n_duration,
       coalesce(sum(duration), 0) AS sum_duration
FROM (
    SELECT customer_id, {{day}} AS day, success, duration
    FROM {{source}}
    WHERE customer_id IS NOT NULL AND status_code IS NOT NULL
)
GROUP BY customer_id, day, bucket
"""
# The sink's batch columns, cast as its INSERT casts them; ts is epoch milliseconds there.
_BATCH = """(SELECT TRY_CAST(customer_id AS VARCHAR) AS customer_id,
                    TRY_CAST(status_code AS INTEGER) AS status_code,
                    TRY_CAST(duration AS DOUBLE) AS duration,
                    TRY_CAST(success AS BOOLEAN) AS success, ts
             FROM rows)"""
_BATCH_DELTA = _DELTA.format(day="(ts * 1000) // 86400000000", source=_BATCH)
_RECORDS_DELTA = _DELTA.format(day="epoch_us(ts) // 86400000000", source="records")
# DuckDB reads a NaN in a NumPy float array back as NULL; a sum is never NULL, so NULL is NaN.
_APPEND_DAYS = """INSERT INTO rollup_days
    SELECT customer_id, day, sum(total), sum(successful), sum(n_duration),
           sum(coalesce(sum_duration, 'nan'::DOUBLE)), false, NULL, NULL
    FROM delta GROUP BY customer_id, day"""
_APPEND_LATENCY = """INSERT INTO rollup_latency
    SELECT customer_id, day, bucket, n_duration FROM delta WHERE n_duration > 0"""

# Settling: the unsettled days' rows, compacted, with the day's quantiles.
_UNSETTLED = "SELECT DISTINCT customer_id, day FROM rollup_days WHERE NOT settled"
_COMPACT_LATENCY = f"""SELECT customer_id, day, bucket, sum(n)::BIGINT AS n FROM rollup_latency
    WHERE day >= $lo AND day <= $hi AND (customer_id, day) IN ({_UNSETTLED})
    GROUP BY customer_id, day, bucket"""
_COMPACT_DAYS = f"""
SELECT d.customer_id, d.day, d.total, d.successful, d.n_duration, d.sum_duration,
       true AS settled, q.median_latency, q.p99_latency
FROM (
    SELECT customer_id, day, sum(total)::BIGINT AS total, sum(successful)::BIGINT AS successful,
           sum(n_duration)::BIGINT AS n_duration, sum(sum_duration) AS sum_duration
    FROM rollup_days
    WHERE day >= $lo AND day <= $hi AND (customer_id, day) IN ({_UNSETTLED})
    GROUP BY customer_id, day
) AS d
LEFT JOIN ({quantiles_sql("latency", "customer_id, day")}) AS q
    ON q.customer_id = d.customer_id AND q.day = d.day
"""
_DROP_UNSETTLED = """DELETE FROM {table}
    WHERE day >= $lo AND day <= $hi AND (customer_id, day) IN ({unsettled})"""


def create(con: duckdb.DuckDBPyConnection) -> None:
    """Create the rollup tables if missing and (re)build them when they do not match records.

    Runs in its own transaction; the rebuild reads every row once (about a minute over 100
    million rows), the first time a logferry with rollups opens an existing store.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(DDL)
        state = con.execute("SELECT version, records FROM rollup_state").fetchall()
        count = _records(con)
        if state != [(VERSION, count)]:
            for table in ("rollup_days", "rollup_latency", "rollup_state"):
                con.execute(f"DELETE FROM {table}")
            _append(con, _RECORDS_DELTA)
            con.execute("INSERT INTO rollup_state VALUES ($v, $n)", {"v": VERSION, "n": count})
            settle(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def add_batch(con: duckdb.DuckDBPyConnection, rows: dict[str, np.ndarray], inserted: int) -> None:
    """Append the ``inserted`` rows just written to ``records`` (the sink's ``rows``).

    Call inside the sink's batch transaction, after the insert, with exactly the rows it
    inserted: then the rollups move with ``records`` or not at all.
    """
    _append(con, _BATCH_DELTA, rows)
    con.execute("UPDATE rollup_state SET records = records + $n", {"n": inserted})


def _append(
    con: duckdb.DuckDBPyConnection, delta_sql: str, rows: dict[str, np.ndarray] | None = None
) -> None:
    # DuckDB's replacement scans find ``rows`` and then ``delta`` among this frame's locals.
    delta = con.execute(delta_sql).fetchnumpy()
    if len(delta["day"]):
        con.execute(_APPEND_DAYS)
        con.execute(_APPEND_LATENCY)


def settle(con: duckdb.DuckDBPyConnection) -> int:
    """Compact the unsettled days and store their median and p99; return how many there were.

    Call inside a write transaction (the sink runs it in a batch's, every so often).
    """
    row = con.execute(
        "SELECT count(*), min(day), max(day) FROM rollup_days WHERE NOT settled"
    ).fetchone()
    if not row or not row[0]:
        return 0
    days = {"lo": row[1], "hi": row[2]}
    # Read both compacted sets before deleting anything: they are computed from the old rows.
    latency = con.execute(_COMPACT_LATENCY, days).fetchnumpy()  # noqa: F841 - scanned below
    compacted = con.execute(
        f"WITH latency AS ({_COMPACT_LATENCY}) {_COMPACT_DAYS}", days
    ).fetchnumpy()
    unsettled = con.execute(_UNSETTLED).fetchnumpy()  # noqa: F841 - read by the DELETEs
    for table in ("rollup_latency", "rollup_days"):
        con.execute(_DROP_UNSETTLED.format(table=table, unsettled="SELECT * FROM unsettled"), days)
    con.execute("INSERT INTO rollup_latency SELECT * FROM latency")
    # NaN came back as NULL (see _APPEND_DAYS); a day with durations has a median and p99.
    con.execute(
        """INSERT INTO rollup_days
        SELECT customer_id, day, total, successful, n_duration,
               coalesce(sum_duration, 'nan'::DOUBLE), settled,
               CASE WHEN n_duration > 0 THEN coalesce(median_latency, 'nan'::DOUBLE) END,
               CASE WHEN n_duration > 0 THEN coalesce(p99_latency, 'nan'::DOUBLE) END
        FROM compacted"""
    )
    return len(compacted["day"])


def _records(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM records").fetchone()
    return int(row[0]) if row else 0


def usable(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the store has rollups of this layout that account for every ``records`` row."""
    import duckdb

    try:
        state = con.execute("SELECT version, records FROM rollup_state").fetchall()
    except duckdb.CatalogException:
        return False
    return state == [(VERSION, _records(con))]


_AVERAGE = "CASE WHEN n_duration > 0 THEN sum_duration / n_duration END"
# The exact query's rows (customer, day or NULL for the range total, total, successful,
# average, median, p99) from the rollups: settled days as stored, unsettled ones summed and
# read from their sketch, totals from the days' sketches merged.
STATS_SQL = f"""
WITH days AS (
    SELECT customer_id, day, sum(total) AS total, sum(successful) AS successful,
           sum(n_duration) AS n_duration, sum(sum_duration) AS sum_duration,
           bool_and(settled) AS settled,
           any_value(median_latency) AS median_latency, any_value(p99_latency) AS p99_latency
    FROM rollup_days
    WHERE day >= $lo AND day <= $hi {{customer}}
    GROUP BY customer_id, day
),
merged AS (
    SELECT customer_id, bucket, sum(n) AS n
    FROM rollup_latency
    WHERE day >= $lo AND day <= $hi {{customer}}
    GROUP BY customer_id, bucket
),
fresh_rows AS (
    SELECT l.customer_id, l.day, l.bucket, sum(l.n) AS n
    FROM rollup_latency AS l
    JOIN (SELECT customer_id, day FROM days WHERE NOT settled) AS u
        ON l.customer_id = u.customer_id AND l.day = u.day
    WHERE l.day >= $lo AND l.day <= $hi
    GROUP BY l.customer_id, l.day, l.bucket
),
totals AS (
    SELECT customer_id, sum(total) AS total, sum(successful) AS successful,
           sum(n_duration) AS n_duration, sum(sum_duration) AS sum_duration
    FROM days
    GROUP BY customer_id
)
SELECT customer_id, NULL::BIGINT AS day, total, successful, {_AVERAGE},
       q.median_latency, q.p99_latency
FROM totals LEFT JOIN ({quantiles_sql("merged", "customer_id")}) AS q USING (customer_id)
UNION ALL
SELECT d.customer_id, d.day, total, successful, {_AVERAGE},
       CASE WHEN settled THEN d.median_latency ELSE f.median_latency END,
       CASE WHEN settled THEN d.p99_latency ELSE f.p99_latency END
FROM days AS d
LEFT JOIN ({quantiles_sql("fresh_rows", "customer_id, day")}) AS f
    ON f.customer_id = d.customer_id AND f.day = d.day
ORDER BY 1, 2 NULLS FIRST
"""
KNOWN_SQL = "SELECT 1 FROM rollup_days WHERE customer_id = $customer LIMIT 1"
