"""Per-source totals and pruning: what keeps the ledger's cost flat as it grows.

A ledger that has shipped millions of objects is mostly DONE rows nobody reads again except
to skip those objects when they are listed. Two things keep that history cheap:

* ``logferry_totals`` holds, per source, the count, lines and bytes of done objects, added
  to in the transaction that marks an object done. ``status`` (the CLI, the dashboard's
  sampler every few seconds) reads those totals plus the unfinished rows (a partial index),
  never the whole table. The totals are split over a few shards per source so that runners
  completing objects at once do not queue on one row lock.
* ``logferry ledger prune`` deletes old DONE rows in small transactions. A pruned object is
  unknown to the ledger, and a listing would ship it again; so a prune first records a
  watermark per source (``logferry_pruned``): objects of that source last modified before it
  and unknown to the ledger count as shipped. The totals keep counting pruned objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from logferry.errors import ConfigError
from logferry.ledger.base import SourceStatus

#: Shards of a source's totals (PostgreSQL: by backend process; SQLite has one writer).
TOTALS_SHARDS = 16

#: Rows of the objects table (by id) one prune transaction looks at.
PRUNE_BATCH = 20_000

TOTALS_DDL = (
    "CREATE TABLE logferry_totals (source TEXT NOT NULL, shard INTEGER NOT NULL, "
    "done BIGINT NOT NULL DEFAULT 0, lines BIGINT NOT NULL DEFAULT 0, "
    "bytes BIGINT NOT NULL DEFAULT 0, last_done DOUBLE PRECISION, PRIMARY KEY (source, shard))"
)
PRUNED_DDL = (
    "CREATE TABLE logferry_pruned (source TEXT PRIMARY KEY, before_ms BIGINT NOT NULL, "
    "rows BIGINT NOT NULL DEFAULT 0, pruned_at DOUBLE PRECISION NOT NULL)"
)


def totals_backfill(table: str) -> str:
    """The migration step that counts the done rows of an existing ledger into the totals."""
    return (
        "INSERT INTO logferry_totals (source, shard, done, lines, bytes, last_done) "
        f"SELECT source, 0, count(*), sum(lines), sum(bytes), max(done_at) FROM {table} "
        "WHERE status = 'done' GROUP BY source"
    )


#: Source ids of local directories (``LocalDirSource.id`` is the directory's file URI).
LOCAL_PREFIX = "file:"
NOT_PRUNABLE = (
    "a local directory's files can come back with an old modification time (cp -p, rsync -a, "
    "tar x), which the prune watermark would take for shipped; its rows are kept"
)


def prunable(source: str) -> bool:
    """Whether ``source``'s done rows may be pruned: its objects' modification times are set
    by the store when they are written (S3, COS), so nothing unshipped can turn up older
    than the watermark. A local directory's mtimes are the user's to set."""
    return not source.startswith(LOCAL_PREFIX)


@dataclass
class PruneResult:
    """What a prune deleted (or would delete), per source."""

    before_ms: int
    dry_run: bool
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: Sources whose rows are never pruned (local directories: see ``prunable``).
    kept: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Rows deleted (or that would be) over every source."""
        return sum(self.rows.values())


class PruneStore:
    """Totals, status and prune statements shared by the SQL ledgers (mixed into them)."""

    _table: ClassVar[str]
    _id: ClassVar[str]
    #: SQL for the shard a transaction adds to, and the two-argument maximum function.
    _shard: ClassVar[str] = "0"
    _greatest: ClassVar[str] = "max"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _atomic(self, work: Callable[[Any, int], Any]) -> Any:
        raise NotImplementedError

    @property
    def _totals_add(self) -> str:
        """Adds (source, done, lines, bytes, last_done) to the source's totals."""
        return (
            "INSERT INTO logferry_totals (source, shard, done, lines, bytes, last_done) "
            f"VALUES (?, {self._shard}, ?, ?, ?, ?) ON CONFLICT (source, shard) DO UPDATE SET "
            "done = logferry_totals.done + excluded.done, "
            "lines = logferry_totals.lines + excluded.lines, "
            "bytes = logferry_totals.bytes + excluded.bytes, "
            f"last_done = {self._greatest}(coalesce(logferry_totals.last_done, 0), "
            "coalesce(excluded.last_done, 0))"
        )

    def status(self) -> list[SourceStatus]:
        """Per source: done objects from the totals, the rest from the unfinished rows."""
        found: dict[str, list[Any]] = {}
        for source, done, lines, nbytes, last in self._rows(
            "SELECT source, sum(done), sum(lines), sum(bytes), max(last_done) "
            "FROM logferry_totals GROUP BY source"
        ):
            found[source] = [int(done or 0), 0, 0, int(lines or 0), int(nbytes or 0), last or None]
        # Stream partitions (never done while followed) count as shipped at their last
        # checkpoint that shipped lines (``updated``).
        for source, status, n, lines, nbytes, last in self._rows(
            f"SELECT source, status, count(*), sum(lines), sum(bytes), "
            f"max(CASE WHEN lines > 0 AND status <> 'failed' THEN updated END) "
            f"FROM {self._table} WHERE status <> 'done' GROUP BY source, status"
        ):
            row = found.setdefault(source, [0, 0, 0, 0, 0, None])
            row[1 if status == "failed" else 2] += int(n)
            row[3] += int(lines or 0)
            row[4] += int(nbytes or 0)
            if last is not None and (row[5] is None or last > row[5]):
                row[5] = last
        return [
            SourceStatus(source, *row)
            for source, row in sorted(found.items())
            if row[0] or row[1] or row[2]
        ]

    def pruned_before(self, source: str) -> int | None:
        """The prune watermark of ``source`` (epoch ms), if it was ever pruned."""
        rows = self._rows("SELECT before_ms FROM logferry_pruned WHERE source = ?", (source,))
        return int(rows[0][0]) if rows else None

    def prune(
        self,
        before_ms: int,
        source: str | None = None,
        *,
        dry_run: bool = False,
        batch: int = PRUNE_BATCH,
        progress: Callable[[int], None] | None = None,
    ) -> PruneResult:
        """Delete done rows finished and last modified before ``before_ms``, ``batch`` ids a
        transaction; first raise the watermark of every source concerned to ``before_ms``.

        ``progress`` is called with the rows deleted so far after each transaction.
        """
        started = time.monotonic()
        result = PruneResult(before_ms, dry_run)
        if source is not None and not prunable(source):
            raise ConfigError(f"{source} cannot be pruned: {NOT_PRUNABLE}")
        cond = "status = 'done' AND done_at < ? AND last_modified_ms < ? AND source NOT LIKE ?"
        params: list[Any] = [before_ms / 1000, before_ms, LOCAL_PREFIX + "%"]
        if source is not None:
            cond += " AND source = ?"
            params.append(source)
        result.kept = sorted(
            src
            for (src,) in self._rows("SELECT DISTINCT source FROM logferry_totals")
            if not prunable(src) and source is None
        )
        t, rowid = self._table, self._id
        if dry_run:
            for src, n in self._rows(
                f"SELECT source, count(*) FROM {t} WHERE {cond} GROUP BY source", params
            ):
                result.rows[src] = int(n)
            result.seconds = time.monotonic() - started
            return result
        sources = (
            [source]
            if source is not None
            else [
                r[0]
                for r in self._rows("SELECT DISTINCT source FROM logferry_totals")
                if prunable(r[0])
            ]
        )
        self._raise_watermarks(sources, before_ms)
        bounds = self._rows(f"SELECT min({rowid}), max({rowid}) FROM {t}")
        low, high = bounds[0] if bounds and bounds[0][0] is not None else (1, 0)
        for start in range(int(low), int(high) + 1, batch):

            def work(run: Any, attempt: int, start: int = start) -> list[tuple[Any, ...]]:
                _, gone = run(
                    f"DELETE FROM {t} WHERE {rowid} >= ? AND {rowid} < ? AND {cond} "
                    "RETURNING source",
                    (start, start + batch, *params),
                )
                return list(gone)

            # A retried batch finds its rows already gone: deleting is idempotent.
            for (src,) in self._atomic(work):
                result.rows[src] = result.rows.get(src, 0) + 1
            if progress is not None:
                progress(result.total)
        for src, n in result.rows.items():
            self._rows("UPDATE logferry_pruned SET rows = rows + ? WHERE source = ?", (n, src))
        result.seconds = time.monotonic() - started
        return result

    def _raise_watermarks(self, sources: list[str], before_ms: int) -> None:
        """Before any row goes: from now on, objects older than this count as shipped."""
        now = time.time()

        def work(run: Any, attempt: int) -> None:
            for src in sources:
                run(
                    "INSERT INTO logferry_pruned (source, before_ms, rows, pruned_at) "
                    "VALUES (?, ?, 0, ?) ON CONFLICT (source) DO UPDATE SET "
                    f"before_ms = {self._greatest}(logferry_pruned.before_ms, excluded.before_ms), "
                    "pruned_at = excluded.pruned_at",
                    (src, before_ms, now),
                )

        self._atomic(work)
