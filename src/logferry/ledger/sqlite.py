"""SQLite ledger (WAL): the embedded default, safe for several processes on one host."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from logferry.errors import ConfigError
from logferry.ledger.base import (
    Claim,
    Seen,
    SourceStatus,
    Status,
)
from logferry.ledger.sql import CRASHED, SqlLedger, claim_verdict, crashed_reason
from logferry.records import ObjectInfo

# Each entry upgrades the schema by one version; never edit a released step.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE objects (
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        last_modified_ms INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        position INTEGER NOT NULL DEFAULT 0,
        lines INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        owner TEXT,
        lease_until REAL,
        first_seen REAL NOT NULL,
        updated REAL NOT NULL,
        done_at REAL,
        PRIMARY KEY (source, key, etag)
    );
    CREATE INDEX objects_source_key ON objects (source, key);
    CREATE INDEX objects_status ON objects (source, status);
    """,
    """
    ALTER TABLE objects ADD COLUMN error_class TEXT;
    """,
    """
    ALTER TABLE objects ADD COLUMN cursor TEXT;
    """,
]


class SQLiteLedger(SqlLedger):
    """Ledger in one SQLite file; one connection per thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.display = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if self.path == ":memory:":
            # A throwaway file rather than SQLite's shared-cache memory mode, whose table
            # locks fail fast under several threads; it is removed on close.
            self._scratch = tempfile.TemporaryDirectory(prefix="logferry-ledger-")
            self.path = str(Path(self._scratch.name) / "ledger.db")
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Created 0600: the ledger names buckets and keys of the user's data.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise ConfigError(f"cannot create ledger {self.path}: {exc.strerror}") from None
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path,
                    timeout=60,
                    isolation_level=None,
                    check_same_thread=False,
                )
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open ledger {self.display}: {exc}") from None
            conn.execute("PRAGMA busy_timeout = 60000")
            _set_wal(conn)
            # NORMAL is durable across process crashes in WAL mode (only power loss can
            # drop the last transactions), which is the failure the ledger must survive.
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    _table = "objects"
    _id = "rowid"

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # A read needs no transaction of its own: WAL gives it a consistent snapshot.
        return self._conn().execute(sql, params).fetchall()

    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        with self._tx() as conn:
            return [conn.execute(sql, params).rowcount for params in param_rows]

    def _migrate(self) -> None:
        try:
            with self._tx() as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                current = row[0] or 0
                if current > len(MIGRATIONS):
                    raise ConfigError(
                        f"ledger {self.display} has schema v{current}, newer than this logferry "
                        f"understands (v{len(MIGRATIONS)}): upgrade logferry"
                    )
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    for statement in MIGRATIONS[version - 1].split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.display} is not a usable ledger: {exc}") from None

    def lookup(self, source: str, keys: Iterable[str]) -> dict[str, Seen]:
        """Map each known key to its most recently updated row."""
        found: dict[str, Seen] = {}
        keys = list(keys)
        conn = self._conn()
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = conn.execute(
                f"SELECT key, etag, status, attempts FROM objects WHERE source = ? AND key IN ({marks}) "
                "ORDER BY updated",
                (source, *part),
            ).fetchall()
            for key, etag, status, attempts in rows:
                found[key] = Seen(etag, Status(status), attempts)
        return found

    def claim(
        self,
        source: str,
        obj: ObjectInfo,
        owner: str,
        lease_seconds: float,
        *,
        force: bool = False,
        max_attempts: int | None = None,
    ) -> Claim | None:
        """Claim ``obj`` in one IMMEDIATE transaction, so two processes cannot both win."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT status, position, attempts, owner, lease_until, cursor FROM objects "
                "WHERE source = ? AND key = ? AND etag = ?",
                (source, obj.key, obj.etag),
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO objects (source, key, etag, size, last_modified_ms, status, "
                    "attempts, owner, lease_until, first_seen, updated) "
                    "VALUES (?, ?, ?, ?, ?, 'active', 1, ?, ?, ?, ?)",
                    (
                        source,
                        obj.key,
                        obj.etag,
                        obj.size,
                        obj.last_modified_ms,
                        owner,
                        now + lease_seconds,
                        now,
                        now,
                    ),
                )
                return Claim(source, obj.key, obj.etag, owner, 0, 1)
            status, position, attempts, holder, lease_until, cursor = row
            verdict = claim_verdict(
                (status, attempts, holder, lease_until),
                owner,
                now,
                force=force,
                max_attempts=max_attempts,
            )
            if verdict == "crashed":
                conn.execute(
                    self._q(self._CRASH),
                    (CRASHED, crashed_reason(attempts), now, source, obj.key, obj.etag),
                )
            if verdict != "claim":
                return None
            if force:
                position, cursor = 0, None
            conn.execute(
                "UPDATE objects SET status = 'active', owner = ?, lease_until = ?, attempts = ?, "
                "position = ?, cursor = CASE WHEN ? THEN NULL ELSE cursor END, "
                "lines = CASE WHEN ? THEN 0 ELSE lines END, "
                "bytes = CASE WHEN ? THEN 0 ELSE bytes END, updated = ? "
                "WHERE source = ? AND key = ? AND etag = ?",
                (
                    owner,
                    now + lease_seconds,
                    attempts + 1,
                    position,
                    force,
                    force,
                    force,
                    now,
                    source,
                    obj.key,
                    obj.etag,
                ),
            )
            return Claim(source, obj.key, obj.etag, owner, position, attempts + 1, cursor)

    def status(self) -> list[SourceStatus]:
        """Per source: counts by status, lines, bytes, last shipped time."""
        rows = (
            self._conn()
            .execute(
                "SELECT source, "
                "sum(status = 'done'), sum(status = 'failed'), "
                "sum(status IN ('active', 'pending')), sum(lines), sum(bytes), max(done_at) "
                "FROM objects GROUP BY source ORDER BY source"
            )
            .fetchall()
        )
        return [SourceStatus(r[0], r[1], r[2], r[3], r[4] or 0, r[5] or 0, r[6]) for r in rows]

    def close(self) -> None:
        """Close every thread's connection."""
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None


def _set_wal(conn: sqlite3.Connection, timeout: float = 60.0) -> None:
    """Switch to WAL, waiting while another process holds the lock.

    Changing the journal mode does not go through SQLite's busy handler: two processes
    opening a brand-new ledger at the same moment would see "database is locked" at once.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
