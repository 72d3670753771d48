"""SQLite ledger (WAL): the embedded default, safe for several processes on one host."""

from __future__ import annotations

import errno
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from logferry.errors import ConfigError
from logferry.ledger.base import (
    Claim,
    LedgerError,
    Seen,
    Status,
)
from logferry.ledger.prune import PRUNED_DDL, TOTALS_DDL, totals_backfill
from logferry.ledger.sql import Run, SqlLedger
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
    # Unfinished rows, renamed tailed files, totals and prune watermarks (see ledger/prune.py);
    # the (source, key) index repeats the primary key's prefix.
    f"""
    CREATE INDEX objects_open ON objects (status, source) WHERE status <> 'done';
    CREATE INDEX objects_cursor ON objects (source, etag) WHERE cursor IS NOT NULL;
    CREATE INDEX objects_held ON objects (source, etag) WHERE status = 'active';
    DROP INDEX objects_source_key;
    {TOTALS_DDL};
    {totals_backfill("objects")};
    {PRUNED_DDL};
    """,
]

T = TypeVar("T")


class SQLiteLedger(SqlLedger):
    """Ledger in one SQLite file; one connection per thread."""

    def __init__(self, path: str | Path, *, create: bool = True, readonly: bool = False) -> None:
        self.path = str(path)
        self.display = f"sqlite:///{self.path}"
        self.readonly = readonly
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        if self.path == ":memory:":
            # A throwaway file rather than SQLite's shared-cache memory mode, whose table
            # locks fail fast under several threads; it is removed on close.
            self._scratch = tempfile.TemporaryDirectory(prefix="logferry-ledger-")
            self.path = str(Path(self._scratch.name) / "ledger.db")
            create, self.readonly = True, False
        if os.path.isdir(self.path):
            raise ConfigError(
                f"ledger {self.path} is a directory: name a file, as in DIR/ledger.db"
            )
        exists = os.path.exists(self.path)
        if not exists and not create:
            raise ConfigError(f"no ledger at {self.path}: ship something first, or pass --ledger")
        # Read-only URIs: ``immutable`` is the fallback for a WAL ledger on a read-only
        # filesystem, where SQLite cannot make the shared-memory file a reader needs.
        self._uris = [f"file:{quote(self.path)}?mode=ro"] if self.readonly else []
        if self.readonly:
            self._uris.append(self._uris[0] + "&immutable=1")
            self._check_schema()
            return
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # Created 0600: the ledger names buckets and keys of the user's data.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            if not exists:
                raise ConfigError(f"cannot create ledger {self.path}: {exc.strerror}") from None
            readable = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
            hint = " (`status` and `errors` can still read it)" if readable else ""
            raise ConfigError(f"cannot write ledger {self.path}: {exc.strerror}{hint}") from None
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        if not self.readonly:
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            _set_wal(conn)
            # NORMAL is durable across process crashes in WAL mode (only power loss can
            # drop the last transactions), which is the failure the ledger must survive.
            conn.execute("PRAGMA synchronous = NORMAL")
            return conn
        while True:
            conn = sqlite3.connect(
                self._uris[0], uri=True, timeout=60, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA busy_timeout = 60000")
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return conn
            except sqlite3.OperationalError:
                conn.close()
                if len(self._uris) == 1 or not _read_only_fs(self.path):
                    raise
                del self._uris[0]

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise self._failure(exc) from None
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _failure(self, exc: sqlite3.Error) -> Exception:
        """A one-line error for what SQLite reported: a config error when the file is unusable."""
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        code = getattr(exc, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_NOTADB or "not a database" in reason:
            return ConfigError(
                f"{self.path} is not a logferry ledger (not a SQLite database): "
                "move it away or pass --ledger"
            )
        if code == sqlite3.SQLITE_CORRUPT or "malformed" in reason:
            return ConfigError(
                f"ledger {self.path} is damaged ({reason}): restore it from a backup, "
                "or move it away and pass --ledger"
            )
        if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in reason:
            return ConfigError(f"cannot open ledger {self.path} ({reason})")
        if code == sqlite3.SQLITE_READONLY or "readonly" in reason:
            return LedgerError(
                f"ledger {self.path} is read-only ({reason}): only `status` and `errors` "
                "can read it; pass a writable --ledger"
            )
        return LedgerError(f"ledger {self.path}: {reason}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    _table = "objects"
    _id = "rowid"
    _dead_letter_ddl = (
        "CREATE TABLE IF NOT EXISTS logferry_dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "source TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, start_pos INTEGER NOT NULL, "
        "end_pos INTEGER NOT NULL, sink TEXT NOT NULL, error_class TEXT NOT NULL, "
        "error TEXT NOT NULL, nbytes INTEGER NOT NULL, created REAL NOT NULL, records BLOB NOT NULL)"
    )

    def _atomic(self, work: Callable[[Run, int], T]) -> T:
        """Run ``work`` in one IMMEDIATE transaction (a local file: nothing to reconnect)."""
        with self._tx() as conn:

            def run(sql: str, params: Sequence[Any] = ()) -> tuple[int, list[Any]]:
                cur = conn.execute(sql, params)
                rows = cur.fetchall()
                return cur.rowcount, rows

            return work(run, 1)

    def _insert_once(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._atomic(lambda run, attempt: run(sql, params)[1])

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # A read needs no transaction of its own: WAL gives it a consistent snapshot.
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._failure(exc) from None

    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        with self._tx() as conn:
            return [conn.execute(sql, params).rowcount for params in param_rows]

    def _check_schema(self) -> None:
        """For a read-only open: the file must be a ledger of this version (nothing to migrate)."""
        tables = {r[0] for r in self._rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "schema_version" not in tables:
            raise self._foreign(tables)
        current = self._rows("SELECT max(version) FROM schema_version")[0][0] or 0
        self._refuse_newer(current)
        if current < len(MIGRATIONS):
            raise ConfigError(
                f"ledger {self.display} has schema v{current}, older than this logferry "
                f"(v{len(MIGRATIONS)}): any command that ships upgrades it"
            )

    def _foreign(self, tables: set[str]) -> ConfigError:
        if tables:
            return ConfigError(
                f"{self.path} is a SQLite database but not a logferry ledger (tables: "
                f"{', '.join(sorted(tables)[:5])}): move it away or pass --ledger"
            )
        return ConfigError(f"no ledger at {self.path}: ship something first, or pass --ledger")

    def _refuse_newer(self, current: int) -> None:
        if current > len(MIGRATIONS):
            raise ConfigError(
                f"ledger {self.display} has schema v{current}, newer than this logferry "
                f"understands (v{len(MIGRATIONS)}): upgrade logferry"
            )

    def _migrate(self) -> None:
        with self._tx() as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            # Someone else's database named by mistake is left as it was.
            if tables and "schema_version" not in tables:
                raise self._foreign(tables)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            self._refuse_newer(current)
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def lookup(self, source: str, keys: Iterable[str]) -> dict[str, Seen]:
        """Map each known key to its most recently updated row."""
        found: dict[str, Seen] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            rows = self._rows(
                f"SELECT key, etag, status, attempts FROM objects WHERE source = ? AND key IN ({marks}) "
                "ORDER BY updated",
                (source, *part),
            )
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
        ident = (source, obj.key, obj.etag)

        def work(run: Run, attempt: int) -> Claim | None:
            _, found = run(
                "SELECT status, position, attempts, owner, lease_until, cursor, lines, bytes "
                "FROM objects WHERE source = ? AND key = ? AND etag = ?",
                ident,
            )
            if found:
                return self._claim_row(
                    run, ident, found[0], owner, now, lease_seconds, force, max_attempts
                )
            run(
                "INSERT INTO objects (source, key, etag, size, last_modified_ms, status, "
                "attempts, owner, lease_until, first_seen, updated) "
                "VALUES (?, ?, ?, ?, ?, 'active', 1, ?, ?, ?, ?)",
                (*ident, obj.size, obj.last_modified_ms, owner, now + lease_seconds, now, now),
            )
            return Claim(source, obj.key, obj.etag, owner, 0, 1)

        return self._atomic(work)

    def check_writable(self) -> None:
        """Take the write lock and give it back at once."""
        if self.readonly:
            raise LedgerError(f"ledger {self.display} is open read-only")
        try:
            with self._tx():
                pass
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write ledger {self.display}: {exc}") from None

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


def _read_only_fs(path: str) -> bool:
    """True when ``path`` lies on a filesystem mounted read-only (nobody can change the file)."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


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
