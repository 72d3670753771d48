"""DuckDB sink: the embedded store, one ``records`` table with the parsed API fields.

URL: ``duckdb:///relative/path.db`` or ``duckdb:////absolute/path.db``.

Exactly-once on replay: every committed batch also records its position range
``[start, end)`` in the small ``ingested`` table, in the same transaction. A batch that comes
again (a restart before the ledger checkpoint, ``errors drain``) inserts only the positions no
earlier range covers. The ``records`` table itself has no primary key: maintaining one (an
ART index over every row, rewritten at each checkpoint) cost more than the insert itself.
Stores created by earlier versions keep their key and use ``ON CONFLICT DO NOTHING`` as well.

Concurrency: DuckDB lets one process open a file for writing and refuses read-only
openers meanwhile. The sink therefore holds the file only while it writes: each batch is
one transaction on a fresh connection that is closed (releasing the lock) right after.
Readers use :func:`open_store_readonly`, which retries while the writer holds the file,
and must close promptly, since the sink likewise retries while a reader holds it. The
price is a connect and checkpoint per batch (a few ms), which large batches amortise.

Rollups: the daily per-customer rollups the stats API reads (:mod:`logferry.stats.rollups`)
are folded in from ``records`` lazily: at most every ``settle_every`` seconds, at the start
of a batch's transaction, every row committed since the last fold is aggregated once and
appended, with the watermark it reached, and the days touched are settled (compacted, their
median and p99 stored); so does ``close``. Readers add the rows past the watermark
themselves, so answers never lag; a crash before a fold leaves rows past the watermark,
which the next fold (or the next sink to open the store) picks up, counted once.

Bulk path: the batch becomes a dict of NumPy arrays that DuckDB scans in place (a
replacement scan); measured 400-550k lines/s against 110-140k for ``unnest`` of Python
lists, and on par with a pyarrow table at a fraction of the install size.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from logferry.errors import ConfigError, FatalSinkError, RetryableSinkError
from logferry.extras import require, require_installed
from logferry.records import Batch
from logferry.redact import redact_url
from logferry.registry import Component, NoOptions
from logferry.sinks.base import Sink
from logferry.stats import rollups

if TYPE_CHECKING:
    # Imported where used: finding the sink components must not load duckdb and numpy.
    import duckdb
    import numpy as np

__all__ = [
    "DDL",
    "INDEX_DDL",
    "DuckDBSink",
    "open_store",
    "open_store_readonly",
    "parse_duckdb_url",
]

SCHEME = "duckdb"

DDL = """CREATE TABLE IF NOT EXISTS records (
        source VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        position BIGINT NOT NULL,
        ts TIMESTAMPTZ NOT NULL,
        line VARCHAR NOT NULL,
        format VARCHAR,
        customer_id VARCHAR,
        request_path VARCHAR,
        status_code INTEGER,
        duration DOUBLE,
        success BOOLEAN
    );
    CREATE TABLE IF NOT EXISTS ingested (
        source VARCHAR NOT NULL,
        key VARCHAR NOT NULL,
        start BIGINT NOT NULL,
        "end" BIGINT NOT NULL
    )"""
# An ART index for point lookups by customer. The stats queries do not need it (zone maps
# and vectorised scans are faster for day ranges) and it halves the insert rate, so it is
# off unless the URL asks for it: ``duckdb:///PATH?index=true``.
INDEX_DDL = "CREATE INDEX IF NOT EXISTS records_customer_ts ON records (customer_id, ts)"

# make_timestamptz takes epoch microseconds, independent of the session's TimeZone.
_INSERT = """INSERT INTO records
    SELECT $source, $key, position, make_timestamptz(ts * 1000), line, $format,
           TRY_CAST(customer_id AS VARCHAR), TRY_CAST(request_path AS VARCHAR),
           TRY_CAST(status_code AS INTEGER), TRY_CAST(duration AS DOUBLE),
           TRY_CAST(success AS BOOLEAN)
    FROM rows"""
_ON_CONFLICT = " ON CONFLICT DO NOTHING"
_COVERED = """SELECT start, "end" FROM ingested
    WHERE source = $source AND key = $key AND "end" > $start AND start < $end"""
# Batches of a partition come in order, so a range usually extends the one before it: the
# table keeps about one row per partition instead of one per batch.
_EXTEND_RANGE = """UPDATE ingested SET "end" = $end
    WHERE rowid = (SELECT rowid FROM ingested
                   WHERE source = $source AND key = $key AND "end" = $start LIMIT 1)
    RETURNING 1"""
_RECORD_RANGE = "INSERT INTO ingested VALUES ($source, $key, $start, $end)"
# Stores keyed by (source, key, position): rows already there count as covered, so the
# rollups see only the rows the insert adds.
_PRESENT = """SELECT position FROM records
    WHERE source = $source AND key = $key AND position >= $start AND position < $end"""
_HAS_PRIMARY_KEY = """SELECT count(*) FROM duckdb_constraints()
    WHERE table_name = 'records' AND constraint_type = 'PRIMARY KEY'"""

# DuckDB checkpoints inside a COMMIT once the WAL passes 16 MiB: every 2-3 batches of
# 50,000 lines. The sink releases the file (which checkpoints) every ``max_hold`` second
# anyway, so with a higher threshold the WAL holds about a second of rows and one checkpoint
# does the work of several: 7-13 % less CPU for the sink's insert/commit pattern in a
# microbenchmark (docs/performance.md). Not persisted: it applies to this connection's
# database instance only.
_CHECKPOINT_THRESHOLD = "SET checkpoint_threshold = '256MiB'"

_TYPED = ("customer_id", "request_path", "status_code", "duration", "success")


def parse_duckdb_url(url: str) -> tuple[Path, bool]:
    """The database path of ``duckdb:///PATH[?index=true]`` and whether to index customers.

    ``duckdb:////abs.db`` is absolute, ``duckdb:///rel.db`` relative to the working directory.
    """
    prefix = f"{SCHEME}:///"
    path, _, query = url[len(prefix) :].partition("?")
    if not url.lower().startswith(prefix) or not path:
        raise ConfigError(
            f"bad DuckDB URL {redact_url(url)!r}: "
            "use duckdb:///relative.db or duckdb:////absolute/path.db"
        )
    options = dict(parse_qsl(query, keep_blank_values=True))
    index = options.pop("index", "false").lower()
    if options or index not in ("true", "false"):
        raise ConfigError(
            f"bad DuckDB URL {redact_url(url)!r}: the only option is index=true|false"
        )
    return Path(unquote(path)), index == "true"


def _locked(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _connect_retrying(
    path: Path, *, read_only: bool, timeout: float, interval: float,
    stop: threading.Event | None = None,
) -> duckdb.DuckDBPyConnection:  # fmt: skip
    import duckdb

    deadline = time.monotonic() + timeout
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if not _locked(exc) or time.monotonic() >= deadline:
                raise
        except duckdb.ConnectionException as exc:
            # This process's own writer holds the file open read-write; it lets go within
            # its idle_close / max_hold window.
            if "different configuration" not in str(exc) or time.monotonic() >= deadline:
                raise
        if stop is not None:
            if stop.wait(interval):
                raise RetryableSinkError(f"duckdb({path}): stopped while waiting for the file lock")
        else:
            time.sleep(interval)


def open_store_readonly(
    path: str | Path, *, timeout: float = 10.0, interval: float = 0.005
) -> duckdb.DuckDBPyConnection:
    """Open the store read-only, retrying while a writer holds it; close it promptly after.

    Raises ``FileNotFoundError`` when there is no store yet, ``duckdb.IOException`` when the
    lock stays taken for ``timeout`` seconds.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no DuckDB store at {path}")
    return _connect_retrying(path, read_only=True, timeout=timeout, interval=interval)


def open_store(
    path: str | Path, *, timeout: float = 10.0, index: bool = False
) -> duckdb.DuckDBPyConnection:
    """Open (creating) the store for writing, with the ``records`` table and its index."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect_retrying(path, read_only=False, timeout=timeout, interval=0.005)
    con.execute(DDL)
    if index:
        con.execute(INDEX_DDL)
    return con


class DuckDBSink(Sink):
    """Inserts batches into the ``records`` table, one transaction per batch."""

    def __init__(
        self,
        url_or_path: str | Path,
        *,
        index: bool = False,
        lock_timeout: float = 60.0,
        stop_event: threading.Event | None = None,
        max_hold: float = 1.0,
        idle_close: float = 0.2,
        settle_every: float = 1.0,
    ) -> None:
        if isinstance(url_or_path, str) and url_or_path.lower().startswith(f"{SCHEME}:"):
            self.path, index = parse_duckdb_url(url_or_path)
        else:
            self.path = Path(url_or_path)
        self.name = f"duckdb({self.path})"
        self.lock_timeout = lock_timeout
        self.stop_event = stop_event
        self._lock = threading.Lock()
        self._counts = {"rows": 0, "transactions": 0}
        # The file lock is held across batches for speed (opening and checkpointing per
        # batch cost more than the insert), but never longer than ``max_hold`` seconds in
        # a row nor ``idle_close`` seconds idle: readers (the stats API) always get their turn.
        self.max_hold = max_hold
        self.idle_close = idle_close
        self._con: duckdb.DuckDBPyConnection | None = None
        # Folding new rows into the rollups and settling their days costs tens of ms, for one
        # batch or a second's worth alike; readers add the rows not folded yet themselves,
        # so it runs at most every ``settle_every`` seconds (0: before every batch).
        self.settle_every = settle_every
        self._settled_at = time.monotonic()
        self._unfolded = False  # rows committed since the last fold
        self._opened_at = 0.0
        self._idle: threading.Timer | None = None
        require("store", "duckdb", "numpy")
        import duckdb

        try:
            con = open_store(self.path, timeout=lock_timeout, index=index)
            try:
                # Stores from before the ``ingested`` table keep their primary key.
                keyed = con.execute(_HAS_PRIMARY_KEY).fetchone()
                rollups.create(con)
            finally:
                con.close()
        except duckdb.Error as exc:
            raise ConfigError(f"{self.name}: cannot open the store: {exc}") from None
        self._keyed = bool(keyed and keyed[0])
        self._insert_sql = _INSERT + (_ON_CONFLICT if self._keyed else "")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> DuckDBSink:
        """Build a sink from a ``duckdb:///PATH`` URL."""
        return cls(url, **options)

    def __repr__(self) -> str:
        return f"DuckDBSink(path={str(self.path)!r})"

    __str__ = __repr__

    def counters(self) -> dict[str, int]:
        """Rows offered to the store (replayed ones included) and transactions committed."""
        with self._lock:
            return dict(self._counts)

    def prepare(self, batch: Batch) -> None:
        """Build the batch's column arrays ahead of ``write`` (decode stage)."""
        batch.prepared[id(self)] = self._columns(batch)

    @staticmethod
    def _columns(batch: Batch) -> dict[str, np.ndarray]:
        import numpy as np

        # Vectorised formats hand over typed NumPy arrays, which DuckDB scans in place;
        # other columns become object arrays (None is NULL, the TRY_CASTs fix the types).
        n = len(batch.lines)
        columns = {
            "position": np.arange(batch.start, batch.start + n, dtype=np.int64),
            "ts": np.array(batch.timestamps, dtype=np.int64),
            "line": np.array(batch.lines, dtype=object),
        }
        for name in _TYPED:
            values = batch.array(name)
            columns[name] = np.full(n, None, dtype=object) if values is None else values
        return columns

    def write(self, batch: Batch) -> None:
        """Insert ``batch`` in one transaction; return once committed and the file released."""
        if not batch.lines:
            return
        columns = batch.prepared.pop(id(self), None)
        if not isinstance(columns, dict):
            columns = self._columns(batch)
        with self._lock:
            self._run(lambda con: self._insert(con, batch, columns))
            self._counts["rows"] += len(batch.lines)
            self._counts["transactions"] += 1

    def _insert(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, columns: dict[str, np.ndarray]
    ) -> None:
        where = {"source": batch.source, "key": batch.key, "start": batch.start, "end": batch.end}
        con.execute("BEGIN TRANSACTION")
        try:
            covered = con.execute(_COVERED, where).fetchall()
            if self._keyed:
                covered += [(p, p + 1) for (p,) in con.execute(_PRESENT, where).fetchall()]
            rows = _uncovered(columns, batch.start, covered)
            # Before the insert: a fold must see committed rows only (see rollups.fold).
            settle = self._unfolded and time.monotonic() - self._settled_at >= self.settle_every
            if settle:
                rollups.fold(con)
                rollups.settle(con)
            if rows is not None:
                # ``rows`` is found by name: DuckDB's replacement scan reads this frame's locals.
                con.execute(
                    self._insert_sql,
                    {"source": batch.source, "key": batch.key, "format": batch.format or None},
                )
                if not con.execute(_EXTEND_RANGE, where).fetchall():
                    con.execute(_RECORD_RANGE, where)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if settle:
            self._settled_at = time.monotonic()
            self._unfolded = False
        self._unfolded = self._unfolded or rows is not None

    def _connection(self) -> duckdb.DuckDBPyConnection:
        """The held connection, reopened after a pause once it has been held ``max_hold``."""
        import duckdb

        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._con is not None and time.monotonic() - self._opened_at > self.max_hold:
            self._release()
            time.sleep(0.02)  # a reader polling every 5 ms takes the file now
        if self._con is None:
            try:
                self._con = _connect_retrying(
                    self.path, read_only=False, timeout=self.lock_timeout, interval=0.005,
                    stop=self.stop_event,
                )  # fmt: skip
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                # Locked by another process, or held open by a reader in this one: later.
                raise RetryableSinkError(f"{self.name}: cannot open the store: {exc}") from None
            self._con.execute(_CHECKPOINT_THRESHOLD)
            self._opened_at = time.monotonic()
        return self._con

    def _release(self) -> None:
        import duckdb

        if self._con is not None:
            with contextlib.suppress(duckdb.Error):
                self._con.close()
            self._con = None

    def _idle_release(self) -> None:
        with self._lock:
            self._release()

    def _run(self, work: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        import duckdb

        con = self._connection()
        try:
            work(con)
        except duckdb.IOException as exc:
            self._release()
            raise RetryableSinkError(f"{self.name}: {exc}") from None
        except duckdb.Error as exc:
            self._release()
            raise FatalSinkError(f"{self.name}: {exc}") from None
        self._idle = threading.Timer(self.idle_close, self._idle_release)
        self._idle.daemon = True
        self._idle.start()

    def close(self) -> None:
        """Fold and settle the rollups (when the store is still held) and release the store."""
        import duckdb

        with self._lock:
            if self._idle is not None:
                self._idle.cancel()
                self._idle = None
            if self._unfolded:
                # Best effort: rows not folded are read correctly, only a little slower, and
                # the next sink to open the store folds them.
                with contextlib.suppress(duckdb.Error, RetryableSinkError):
                    self._settle(self._connection())
            self._release()

    def _settle(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("BEGIN TRANSACTION")
        try:
            rollups.fold(con)
            rollups.settle(con)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._unfolded = False


def _uncovered(
    columns: dict[str, np.ndarray], start: int, covered: list[tuple[int, int]]
) -> dict[str, np.ndarray] | None:
    """The rows of ``columns`` (positions from ``start``) no ``covered`` range holds yet."""
    import numpy as np

    if not covered:
        return columns
    n = len(columns["position"])
    keep = np.ones(n, dtype=bool)
    for lo, hi in covered:
        keep[max(lo - start, 0) : max(hi - start, 0)] = False
    if not keep.any():
        return None
    return {name: values[keep] for name, values in columns.items()}


def from_url(url: str, **options: Any) -> DuckDBSink:
    """Build a :class:`DuckDBSink` from a ``duckdb:///PATH`` URL."""
    return DuckDBSink.from_url(url, **options)


def _check(url: str, options: NoOptions) -> None:
    parse_duckdb_url(url)
    require_installed("store", "duckdb", "numpy")


def _open(url: str, options: NoOptions, *, stop: threading.Event | None = None) -> DuckDBSink:
    return DuckDBSink.from_url(url, stop_event=stop)


COMPONENT = Component(
    name="duckdb",
    kind="sink",
    schemes=(SCHEME,),
    options=NoOptions,
    check=_check,
    open=_open,
    usage="duckdb:///PATH",
    summary="the embedded DuckDB store the stats API queries (exactly-once on replay)",
    preload=("duckdb",),
)
