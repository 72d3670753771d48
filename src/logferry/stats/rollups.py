"""Daily per-customer rollups of the DuckDB store, folded in from ``records`` lazily.

Tables:

- ``rollup_days (customer_id, day, total, successful, n_duration, sum_duration, settled,
  median_latency, p99_latency)``: exact counts and duration sums per customer and UTC day
  (``day`` = epoch days, as in the exact query).
- ``rollup_latency (customer_id, day, bucket, n)``: a DDSketch of the durations per customer
  and day, stored as rows. Bucket ``i`` holds the durations in ``(γ^(i-1), γ^i]`` with
  ``γ = (1 + α) / (1 - α)``, ``α = 1 %``; a quantile read from it is the bucket's midpoint
  ``2γ^i / (γ + 1)``, within 1 % of the exact order statistic of the same rank. Counts are
  exact, so sketches of several days merge by adding counts: range totals are as accurate
  as single days.
- ``rollup_state (version, records)`` and ``rollup_watermark (next_rowid)``: the layout, and
  the watermark: the rollups account for exactly the ``records`` rows with
  ``rowid < next_rowid``, ``records`` of them. (Two tables so that an older logferry, which
  knows only the first, can still open the store: it sees another version and rebuilds.)

Folding (:func:`fold`) appends one aggregation of the rows past the watermark (a few rows per
customer and day, one per latency bucket) and moves the watermark, in one transaction: a
crash loses both or neither, so no row is lost or counted twice. DuckDB gives committed rows
ascending row ids and prunes row groups on ``rowid`` filters, so the rows past the watermark
cost a scan of themselves only. The sink folds at most once a second and on close, not per
batch: per batch it cost a fifth of the ingest rate. Readers (:data:`STATS_SQL`) add the same
aggregation of the rows not folded yet to what the rollups hold, so every answer covers every
row, folded or not.

Folded days are unsettled until :func:`settle` compacts them to one row per key and stores
their median and p99, so readers normally find every number precomputed; a reader that meets
unsettled days sums their rows and reads their quantiles from the sketch itself, with the
same result.

A reader trusts the rollups only when the rows below the watermark still number
``rollup_state.records`` (rows deleted by hand break that); otherwise, or in a store written
by an older logferry, it falls back to the exact query, and the next writer rebuilds them.

Bucket keys are one ordered integer: ``0`` for |d| ≤ 1 ns (read back as 0), ``±(OFFSET + i)``
for positive and negative durations, ``±INF_KEY`` for ±infinity and ``NAN_KEY`` for NaN
(DuckDB sorts NaN above everything), so the ranks agree with the exact query's.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
VERSION = 2

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
CREATE TABLE IF NOT EXISTS rollup_state (version INTEGER NOT NULL, records BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS rollup_watermark (next_rowid BIGINT NOT NULL)
"""
_TABLES = ("rollup_days", "rollup_latency", "rollup_state", "rollup_watermark")
_STATE = """SELECT s.version, s.records, w.next_rowid
    FROM rollup_state AS s, rollup_watermark AS w"""
# DuckDB numbers a transaction's own uncommitted rows from 2^55 - 3968 up; committed ones
# count from 0. A watermark that high would skip every row committed later.
_LOCAL_ROWIDS = 1 << 54


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
    SELECT customer_id, epoch_us(ts) // 86400000000 AS day, success, duration
    FROM {{source}}
    WHERE customer_id IS NOT NULL AND status_code IS NOT NULL
)
GROUP BY customer_id, day, bucket
"""
# What a fold adds: the rows from the watermark to the last committed one.
_FOLD_DELTA = _DELTA.format(
    source="(SELECT * FROM records WHERE rowid >= $next AND rowid <= $last)"
)
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
    """Create the rollup tables if missing, (re)build them when they do not match records, fold.

    Runs in its own transaction; the rebuild reads every row once (about a minute over 100
    million rows), the first time a logferry with this layout opens an existing store. Rows
    a crashed writer committed but did not fold are folded here.
    """
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(DDL)
        if watermark(con) is None:
            for table in _TABLES:
                con.execute(f"DELETE FROM {table}")
            con.execute("INSERT INTO rollup_state VALUES ($v, 0)", {"v": VERSION})
            con.execute("INSERT INTO rollup_watermark VALUES (0)")
        fold(con)
        settle(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def fold(con: duckdb.DuckDBPyConnection) -> int:
    """Append the committed rows past the watermark to the rollups; return how many there were.

    Call inside a write transaction, before it inserts anything: its own uncommitted rows
    carry provisional row ids. The appended rows and the new watermark commit (or roll
    back) together.
    """
    state = con.execute("SELECT records, next_rowid FROM rollup_state, rollup_watermark").fetchone()
    if state is None:
        raise RuntimeError("no rollup watermark: call create() first")
    pending = con.execute(
        "SELECT count(*), max(rowid) FROM records WHERE rowid >= $next", {"next": state[1]}
    ).fetchone()
    if not pending or not pending[0]:
        return 0
    count, last = pending
    if last >= _LOCAL_ROWIDS:
        raise RuntimeError("fold() ran after an insert in the same transaction")
    _append(con, _FOLD_DELTA, {"next": state[1], "last": last})
    con.execute("UPDATE rollup_state SET records = records + $n", {"n": count})
    con.execute("UPDATE rollup_watermark SET next_rowid = $next", {"next": last + 1})
    return int(count)


def _append(con: duckdb.DuckDBPyConnection, delta_sql: str, params: dict[str, int]) -> None:
    # DuckDB's replacement scan finds ``delta`` among this frame's locals.
    delta = con.execute(delta_sql, params).fetchnumpy()
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


def watermark(con: duckdb.DuckDBPyConnection) -> int | None:
    """The first row id the rollups do not cover, or None when they cannot be trusted.

    None: no rollups, another layout, or rows below the watermark deleted since the fold.
    """
    import duckdb

    try:
        state = con.execute(_STATE).fetchall()
    except (duckdb.CatalogException, duckdb.BinderException):
        return None
    if len(state) != 1 or state[0][0] != VERSION:
        return None
    _, records, next_rowid = state[0]
    row = con.execute(
        "SELECT count(*) FROM records WHERE rowid < $next", {"next": next_rowid}
    ).fetchone()
    return int(next_rowid) if row and row[0] == records else None


_AVERAGE = "CASE WHEN n_duration > 0 THEN sum_duration / n_duration END"
# The rows not folded yet, aggregated as a fold would (``{customer}`` filled in by the caller).
_UNFOLDED = _DELTA.format(source="(SELECT * FROM records WHERE rowid >= $next {customer})")
# The sketch rows in range, folded or not: written out where used rather than as a CTE, which
# DuckDB would materialise (a copy of every bucket row in the range) for its two readers.
_LATENCY = """(
    SELECT customer_id, day, bucket, n
    FROM rollup_latency
    WHERE day >= $lo AND day <= $hi {customer}
    UNION ALL
    SELECT customer_id, day, bucket, n_duration FROM unfolded WHERE n_duration > 0
)"""
# The exact query's rows (customer, day or NULL for the range total, total, successful,
# average, median, p99) from the rollups plus the rows not folded yet: settled days as
# stored, unsettled ones summed and read from their sketch, totals from the days' sketches
# merged. Parameters: $lo, $hi (epoch days), $next (the watermark), and $customer if used.
STATS_SQL = f"""
WITH unfolded AS (
    SELECT * FROM ({_UNFOLDED}) WHERE day >= $lo AND day <= $hi
),
day_rows AS (
    SELECT customer_id, day, total, successful, n_duration, sum_duration, settled,
           median_latency, p99_latency
    FROM rollup_days
    WHERE day >= $lo AND day <= $hi {{customer}}
    UNION ALL
    SELECT customer_id, day, sum(total), sum(successful), sum(n_duration), sum(sum_duration),
           false, NULL, NULL
    FROM unfolded GROUP BY customer_id, day
),
days AS (
    SELECT customer_id, day, sum(total) AS total, sum(successful) AS successful,
           sum(n_duration) AS n_duration, sum(sum_duration) AS sum_duration,
           bool_and(settled) AS settled,
           any_value(median_latency) AS median_latency, any_value(p99_latency) AS p99_latency
    FROM day_rows
    GROUP BY customer_id, day
),
merged AS (
    SELECT customer_id, bucket, sum(n) AS n
    FROM {_LATENCY}
    GROUP BY customer_id, bucket
),
fresh_rows AS (
    SELECT l.customer_id, l.day, l.bucket, sum(l.n) AS n
    FROM {_LATENCY} AS l
    JOIN (SELECT customer_id, day FROM days WHERE NOT settled) AS u
        ON l.customer_id = u.customer_id AND l.day = u.day
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
KNOWN_SQL = """SELECT 1 FROM rollup_days WHERE customer_id = $customer
UNION ALL
SELECT 1 FROM records
WHERE rowid >= $next AND customer_id = $customer AND status_code IS NOT NULL
LIMIT 1"""
