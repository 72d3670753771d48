"""What the SQLite and PostgreSQL ledgers share: the statements on held claims and on rows.

Statements are written once, with ``?`` placeholders and ``{t}`` for the objects table; a
backend says how to run one (:meth:`SqlLedger._rows`, :meth:`SqlLedger._counts`) and keeps
only what differs between the two databases: connecting, migrating, claiming (row locks
versus an IMMEDIATE transaction), bulk lookups and the status aggregates.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from logferry.ledger.base import Claim, ClaimLostError, Entry, Ledger, Status, owner_is_dead
from logferry.ledger.cursors import CursorStore
from logferry.ledger.dead_letters import DeadLetterStore
from logferry.ledger.prune import PruneStore

T = TypeVar("T")

#: Runs one statement (``?`` placeholders) inside a transaction: (rows changed, rows returned).
Run = Callable[[str, Sequence[Any]], tuple[int, list[tuple[Any, ...]]]]

_COLUMNS = (
    "{id}, source, key, etag, size, status, position, lines, bytes, attempts, error_class, "
    "last_error, owner, first_seen, updated, cursor"
)


def _entry(row: Sequence[Any]) -> Entry:
    (rowid, source, key, etag, size, status, position, lines, nbytes, attempts, error_class,
     last_error, owner, first_seen, updated, cursor) = row  # fmt: skip
    return Entry(
        rowid, source, key, etag, size, Status(status), position, lines, nbytes, attempts,
        error_class, last_error, owner, first_seen, updated, cursor,
    )  # fmt: skip


#: Error class of an object whose runners kept dying while they shipped it.
CRASHED = "Crashed"


def crashed_reason(attempts: int) -> str:
    """The error queue's one line for an object whose runners kept dying on it."""
    return (
        f"the runner died while shipping this object, {attempts} attempts so far (killed or "
        "out of memory?); it waits in the error queue: `logferry drain`"
    )


def claim_verdict(
    row: Sequence[Any],
    owner: str,
    now: float,
    *,
    force: bool,
    max_attempts: int | None,
) -> str:
    """What a claim does with an existing row ``(status, attempts, holder, lease_until)``.

    ``"skip"``: done, or held by a live runner. ``"crashed"``: its holder died (lease run
    out, or a process we can see is gone) and taking it over would exceed ``max_attempts``,
    so it goes to the error queue instead of killing the next runner too. ``"claim"``:
    take it. Each takeover of a dead holder's claim counts as an attempt, as any claim does.
    """
    status, attempts, holder, lease_until = row
    if status == Status.DONE and not force:
        return "skip"
    if status != Status.ACTIVE or holder in (None, owner):
        return "claim"
    if (lease_until or 0) > now and not owner_is_dead(holder):
        return "skip"
    # A forced claim is someone asking for this object again, like drain: not counted out.
    if max_attempts is not None and attempts + 1 > max_attempts and not force:
        return "crashed"
    return "claim"


class SqlLedger(PruneStore, CursorStore, DeadLetterStore, Ledger):
    """A ledger kept in one SQL table of objects; subclasses run the statements."""

    #: The objects table and its row id column, as the backend names them.
    _table: ClassVar[str]
    _id: ClassVar[str]

    @abstractmethod
    def _atomic(self, work: Callable[[Run, int], T]) -> T:
        """Run ``work(run, attempt)`` in one transaction and return what it returns.

        A backend may run ``work`` again (``attempt`` 2, 3, ...) when the connection dropped
        before the commit was confirmed: the first attempt may or may not have committed.
        """

    @abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders); return its rows (none for a write)."""

    @abstractmethod
    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        """Run one statement per parameter row, all in one transaction; rows each changed."""

    #: Moves a claimed row whose runners kept dying to the error queue (see claim_verdict).
    _CRASH = (
        "UPDATE {t} SET status = 'failed', owner = NULL, lease_until = NULL, error_class = ?, "
        "last_error = ?, updated = ? WHERE source = ? AND key = ? AND etag = ?"
    )

    def _q(self, sql: str) -> str:
        return sql.format(t=self._table, columns=_COLUMNS.format(id=self._id), id=self._id)

    def _claim_row(
        self,
        run: Run,
        ident: tuple[str, str, str],
        row: Sequence[Any],
        owner: str,
        now: float,
        lease_seconds: float,
        force: bool,
        max_attempts: int | None,
    ) -> Claim | None:
        """Claim an existing, locked row per :func:`claim_verdict`."""
        status, position, attempts, holder, lease_until, cursor, lines, nbytes = row
        verdict = claim_verdict(
            (status, attempts, holder, lease_until),
            owner,
            now,
            force=force,
            max_attempts=max_attempts,
        )
        if verdict == "crashed":
            run(self._q(self._CRASH), (CRASHED, crashed_reason(attempts), now, *ident))
        if verdict != "claim":
            return None
        if force:
            position, cursor = 0, None
            if status == Status.DONE:  # shipped again from the start: no longer counted done
                run(self._totals_add, (ident[0], -1, -lines, -nbytes, None))
        update = (
            "UPDATE {t} SET status = 'active', owner = ?, lease_until = ?, attempts = ?, "
            "position = ?, cursor = CASE WHEN ? THEN NULL ELSE cursor END, "
            "lines = CASE WHEN ? THEN 0 ELSE lines END, bytes = CASE WHEN ? THEN 0 ELSE bytes END, "
            "updated = ? WHERE source = ? AND key = ? AND etag = ?"
        )
        until = now + lease_seconds
        run(
            self._q(update),
            (owner, until, attempts + 1, position, force, force, force, now, *ident),
        )
        return Claim(ident[0], ident[1], ident[2], owner, position, attempts + 1, cursor)

    def get(self, source: str, key: str, etag: str) -> Entry | None:
        """The row of this object version, if any."""
        rows = self._rows(
            self._q("SELECT {columns} FROM {t} WHERE source = ? AND key = ? AND etag = ?"),
            (source, key, etag),
        )
        return _entry(rows[0]) if rows else None

    def _update_held(
        self, claim: Claim, sql: str, params: tuple[Any, ...], now: float, final: Status | None
    ) -> list[tuple[Any, ...]]:
        """Update a row we hold; its ``RETURNING`` rows. ClaimLostError when it is not ours.

        ``final`` is the status the update leaves, when it also drops the claim: after a
        dropped connection the first attempt may have committed, which the retry recognises
        by the status and our ``updated`` time (see :meth:`_atomic`).
        """
        ident = (claim.source, claim.key, claim.etag)

        def work(run: Run, attempt: int) -> list[tuple[Any, ...]] | None:
            _, rows = run(
                self._q("UPDATE {t} SET ") + sql + " WHERE source = ? AND key = ? AND etag = ? "
                "AND owner = ? RETURNING lines, bytes",
                (*params, *ident, claim.owner),
            )
            if rows:
                if final == Status.DONE:
                    run(self._totals_add, (claim.source, 1, rows[0][0], rows[0][1], now))
                return rows
            if attempt > 1 and final is not None:
                _, mine = run(
                    self._q(
                        "SELECT lines, bytes FROM {t} WHERE source = ? AND key = ? AND etag = ? "
                        "AND owner IS NULL AND status = ? AND updated = ?"
                    ),
                    (*ident, str(final), now),
                )
                return mine or None
            return None

        done = self._atomic(work)
        if done is None:
            raise ClaimLostError(f"claim on {claim.key} was taken over by another runner")
        return done

    def checkpoint(
        self,
        claim: Claim,
        position: int,
        add_bytes: int,
        lease_seconds: float,
        cursor: str | None = None,
    ) -> None:
        """Advance the acknowledged position (only ever called after every sink acked)."""
        now = time.time()
        # Bytes count only when the position moves: a checkpoint retried after a dropped
        # connection (its first attempt committed) must not count them twice.
        self._update_held(
            claim,
            "position = ?, lines = ?, bytes = bytes + CASE WHEN position = ? THEN 0 ELSE ? END, "
            "lease_until = ?, updated = ?, cursor = COALESCE(?, cursor)",
            (position, position, position, add_bytes, now + lease_seconds, now, cursor),
            now,
            None,
        )

    def latest_cursor(self, source: str, etag: str) -> tuple[str, int, str] | None:
        """The freshest stored cursor of this version under any key."""
        rows = self._rows(
            self._q(
                "SELECT key, position, cursor FROM {t} WHERE source = ? AND etag = ? "
                "AND cursor IS NOT NULL ORDER BY updated DESC LIMIT 1"
            ),
            (source, etag),
        )
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

    def held_elsewhere(self, source: str, etag: str, key: str) -> str | None:
        """Another key under which ``etag`` is claimed now (a live lease), else None."""
        rows = self._rows(
            self._q(
                "SELECT key FROM {t} WHERE source = ? AND etag = ? AND key <> ? "
                "AND status = 'active' AND owner IS NOT NULL AND lease_until > ? LIMIT 1"
            ),
            (source, etag, key, time.time()),
        )
        return str(rows[0][0]) if rows else None

    def renew(self, claims: Iterable[Claim], lease_seconds: float) -> list[Claim]:
        """Heartbeat: extend leases of claims we still hold; return the ones we lost."""
        until = time.time() + lease_seconds
        # A fixed order keeps two heartbeats over overlapping rows from deadlocking.
        ordered = sorted(claims, key=lambda c: (c.source, c.key, c.etag, c.owner))
        changed = self._counts(
            self._q(
                "UPDATE {t} SET lease_until = ? "
                "WHERE source = ? AND key = ? AND etag = ? AND owner = ?"
            ),
            [(until, c.source, c.key, c.etag, c.owner) for c in ordered],
        )
        return [c for c, n in zip(ordered, changed, strict=True) if n == 0]

    def complete(self, claim: Claim) -> None:
        """Mark done and drop the claim."""
        now = time.time()
        self._update_held(
            claim,
            "status = 'done', owner = NULL, lease_until = NULL, last_error = NULL, "
            "updated = ?, done_at = ?",
            (now, now),
            now,
            Status.DONE,
        )

    def fail(self, claim: Claim, error: str, error_class: str = "") -> None:
        """Mark failed with a one-line reason."""
        # PostgreSQL text cannot hold NUL, which a decode error may quote.
        reason = error.splitlines()[0].replace("\x00", "") if error else "unknown error"
        now = time.time()
        self._update_held(
            claim,
            "status = 'failed', owner = NULL, lease_until = NULL, last_error = ?, "
            "error_class = ?, updated = ?",
            (reason, error_class or None, now),
            now,
            Status.FAILED,
        )

    def release(self, claim: Claim) -> None:
        """Hand the object back unfinished; the next claim resumes at its position."""
        now = time.time()
        self._update_held(
            claim,
            "status = 'pending', owner = NULL, lease_until = NULL, updated = ?",
            (now,),
            now,
            Status.PENDING,
        )

    def entries(self, source: str | None = None, status: Status | None = None) -> list[Entry]:
        """Rows filtered by source and status, most recently updated first."""
        where: list[str] = []
        params: list[Any] = []
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
            if status != Status.DONE:
                # Implied, but lets either database use the partial index of unfinished rows.
                where.append("status <> 'done'")
        sql = self._q("SELECT {columns} FROM {t}")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += self._q(" ORDER BY updated DESC, {id} DESC")
        return [_entry(r) for r in self._rows(sql, params)]

    def entry(self, entry_id: int) -> Entry | None:
        """The row with this id."""
        rows = self._rows(self._q("SELECT {columns} FROM {t} WHERE {id} = ?"), (entry_id,))
        return _entry(rows[0]) if rows else None

    def purge_failed(self, ids: Iterable[int] | None = None, source: str | None = None) -> int:
        """Delete failed rows, optionally only these ids or this source."""
        sql = self._q("DELETE FROM {t} WHERE status = 'failed' AND status <> 'done'")
        params: list[Any] = []
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        if ids is None:
            return sum(self._counts(sql, [params]))
        return sum(self._counts(sql + self._q(" AND {id} = ?"), [(*params, i) for i in ids]))
