"""PostgreSQL ledger: one ledger shared by runners on many hosts."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from logferry.errors import ConfigError
from logferry.ledger.base import (
    Claim,
    LedgerError,
    Seen,
    Status,
)
from logferry.ledger.prune import PRUNED_DDL, TOTALS_DDL, TOTALS_SHARDS, totals_backfill
from logferry.ledger.reconnect import Outage, connection_lost
from logferry.ledger.sql import Run, SqlLedger
from logferry.records import ObjectInfo

T = TypeVar("T")

#: How long a statement is retried while the server cannot be reached (seconds).
RETRY_SECONDS = float(os.environ.get("LOGFERRY_LEDGER_RETRY_SECONDS", "120"))

# Each entry upgrades the schema by one version; never edit a released step.
MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE logferry_objects (
            id BIGSERIAL PRIMARY KEY,
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            etag TEXT NOT NULL,
            size BIGINT NOT NULL DEFAULT 0,
            last_modified_ms BIGINT NOT NULL DEFAULT 0,
            status TEXT NOT NULL,
            position BIGINT NOT NULL DEFAULT 0,
            lines BIGINT NOT NULL DEFAULT 0,
            bytes BIGINT NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            error_class TEXT,
            last_error TEXT,
            owner TEXT,
            lease_until DOUBLE PRECISION,
            first_seen DOUBLE PRECISION NOT NULL,
            updated DOUBLE PRECISION NOT NULL,
            done_at DOUBLE PRECISION,
            UNIQUE (source, key, etag)
        )
        """,
        "CREATE INDEX logferry_objects_status ON logferry_objects (source, status)",
    ],
    ["ALTER TABLE logferry_objects ADD COLUMN cursor TEXT"],
    [
        # Unfinished rows (the error queue, pending/active listings, status): a small index
        # however many done rows the table holds. No column a checkpoint changes is indexed
        # (``updated``, say), so a checkpoint stays a HOT update that touches no index.
        "CREATE INDEX logferry_objects_open ON logferry_objects (status, source) "
        "WHERE status <> 'done'",
        # A renamed tailed file: its cursor, and whether another key holds it now.
        "CREATE INDEX logferry_objects_cursor ON logferry_objects (source, etag) "
        "WHERE cursor IS NOT NULL",
        "CREATE INDEX logferry_objects_held ON logferry_objects (source, etag) "
        "WHERE status = 'active'",
        # Room in each page for the new version of a row a checkpoint updates (HOT).
        "ALTER TABLE logferry_objects SET (fillfactor = 90)",
        TOTALS_DDL,
        totals_backfill("logferry_objects"),
        PRUNED_DDL,
    ],
]

# Any constant shared by every logferry process: serializes concurrent migrators.
_MIGRATION_LOCK = 0x6C6F6766  # "logf"

_ROW = "source = ? AND key = ? AND etag = ?"

_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def redact_url(url: str) -> str:
    """``url`` with its password (in the userinfo or a ``password=`` parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hosts = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hosts}" if sep else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _read_only(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    """Pool hook of a read-only ledger: the server refuses any write on its connections."""
    conn.execute("SET default_transaction_read_only = on")
    conn.commit()


def _transaction(
    conn: psycopg.Connection[tuple[Any, ...]], work: Callable[[Run, int], T], attempt: int
) -> T:
    """``work`` on ``conn``'s cursor (whoever holds ``conn`` commits: the pool, or the
    connection's own context)."""
    with conn.cursor() as cur:

        def run(sql: str, params: Sequence[Any] = ()) -> tuple[int, list[Any]]:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.rowcount, cur.fetchall() if cur.description else []

        return work(run, attempt)


def _passwords(url: str) -> list[str]:
    parts = urlsplit(url)
    found = [parts.password, dict(parse_qsl(parts.query)).get("password")]
    # Scrub the spelling in the URL and the decoded one libpq may echo.
    return [s for p in found if p for s in {p, unquote(p)}]


class PostgresLedger(SqlLedger):
    """Ledger in PostgreSQL tables ``logferry_objects`` and ``logferry_schema_version``.

    A small connection pool serves the runner's worker threads.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self.display = redact_url(url)
        self._secrets = _passwords(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(f"bad ledger URL {self.display}: {self._reason(exc)}") from None
        # libpq waits for the OS timeout (minutes) on an unreachable host; fail sooner.
        kwargs: dict[str, Any] = {} if "connect_timeout" in params else {"connect_timeout": 10}
        self._url, self._kwargs = url, kwargs
        self._readonly = readonly
        # Migrating over a direct connection first surfaces a clear connection error.
        with self._connect() as conn:
            if readonly or not create:
                self._check_schema(conn, readonly=readonly)
            if not readonly:
                self._migrate(conn)
        self.retry_seconds = RETRY_SECONDS
        # The pool warns of every connection it drops during an outage, with libpq's
        # multi-line text; the ledger says once that the server is unreachable instead.
        pool_log = logging.getLogger("psycopg.pool")
        if pool_log.level == logging.NOTSET:
            pool_log.setLevel(logging.ERROR)
        self._outage = Outage(self.display)
        self._pool = ConnectionPool(
            url,
            # Keepalives notice a server that vanished without closing the connection.
            kwargs={**_KEEPALIVES, **kwargs},
            min_size=1,
            max_size=max_connections,
            # Give up reconnecting soon: the pool's own backoff doubles without bound, so
            # after a long outage it would wake late. _atomic keeps asking instead, and each
            # request for a connection starts a fresh attempt.
            reconnect_timeout=5,
            open=False,
            # Checked at checkout so a restarted server costs one reconnect, not a failure.
            check=ConnectionPool.check_connection,
            configure=_read_only if readonly else None,
            name="logferry-ledger",
        )
        self._pool.open()

    def __repr__(self) -> str:
        return f"PostgresLedger({self.display!r})"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _reason(self, exc: BaseException) -> str:
        # libpq's messages run to several lines ("connection to server ... failed: ...\n
        # Is the server running ..."): the first line names the cause.
        lines = str(exc).strip().splitlines()
        return self._scrub(lines[0] if lines else type(exc).__name__)

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            return psycopg.connect(self._url, **self._kwargs)
        except psycopg.Error as exc:
            raise ConfigError(
                f"cannot connect to ledger {self.display}: {self._reason(exc)}"
            ) from None

    def _atomic(self, work: Callable[[Run, int], T], *, patience: float | None = None) -> T:
        """Run ``work`` in one transaction on a pooled connection.

        A connection lost (server restarted, network cut) is retried with backoff for up to
        ``retry_seconds`` (``patience`` if given), then fails with a LedgerError: the pool
        reconnects meanwhile. Statements run by ``work`` must be safe to run again, as the
        first attempt may have committed before the connection dropped (see _update_held).
        """
        attempt = 0
        patience = self.retry_seconds if patience is None else patience
        while True:
            attempt += 1
            wait = self._outage.connect_wait(patience)
            began = time.monotonic()
            try:
                try:
                    with self._pool.connection(timeout=wait) as conn:
                        result = _transaction(conn, work, attempt)
                except PoolTimeout:
                    # After an outage the pool reconnects on its own backoff (seconds apart),
                    # so a server that is back may still find it empty: ask the server itself.
                    result = self._direct(work, attempt, wait)
                self._outage.over()
                return result
            except PoolTimeout:
                reason = f"no connection within {wait:.0f} s"
            except psycopg.Error as exc:
                if not connection_lost(exc):
                    raise self._failure(exc) from None
                reason = self._reason(exc)
            self._outage.wait(reason, patience, attempt, began)

    def _direct(self, work: Callable[[Run, int], T], attempt: int, wait: float) -> T:
        """``work`` in one transaction on a connection of its own, opened within ``wait`` s."""
        timeout = max(1, round(wait))
        with psycopg.connect(self._url, **{**_KEEPALIVES, **self._kwargs, "connect_timeout": timeout}
                             ) as conn:  # fmt: skip
            if self._readonly:
                _read_only(conn)
            return _transaction(conn, work, attempt)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._atomic(lambda run, attempt: run(sql, params)[1])

    def _counts(self, sql: str, param_rows: Iterable[Sequence[Any]]) -> list[int]:
        rows = [tuple(p) for p in param_rows]
        return self._atomic(lambda run, attempt: [run(sql, p)[0] for p in rows])

    def _insert_once(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """An INSERT that must not run twice: not retried once it may have reached the server."""
        try:
            with self._pool.connection() as conn, conn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), params)
                return cur.fetchall()
        except PoolTimeout as exc:
            raise LedgerError(f"cannot reach ledger {self.display}: {self._reason(exc)}") from None
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: psycopg.Error) -> LedgerError:
        """A one-line error for a statement the server refused or gave up on."""
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return LedgerError(
                f"ledger {self.display} did not answer in time ({self._reason(exc)}): "
                "a lock held elsewhere or a busy server; try again"
            )
        return LedgerError(f"ledger {self.display}: {self._reason(exc)}")

    def _check_schema(self, conn: psycopg.Connection[tuple[Any, ...]], *, readonly: bool) -> None:
        """Without ``create``, the database must hold a ledger; read-only, one of this version."""
        try:
            with conn.transaction():
                found = conn.execute(
                    "SELECT to_regclass('logferry_schema_version') IS NOT NULL"
                ).fetchone()
                if not (found and found[0]):
                    raise ConfigError(
                        f"no ledger at {self.display}: ship something first, or pass --ledger"
                    )
                row = conn.execute("SELECT max(version) FROM logferry_schema_version").fetchone()
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        current = (row[0] if row else None) or 0
        if current > len(MIGRATIONS):
            raise ConfigError(
                f"ledger {self.display} has schema v{current}, newer than this logferry "
                f"understands (v{len(MIGRATIONS)}): upgrade logferry"
            )
        if readonly and current < len(MIGRATIONS):
            raise ConfigError(
                f"ledger {self.display} has schema v{current}, older than this logferry "
                f"(v{len(MIGRATIONS)}): any command that ships upgrades it"
            )

    _table = "logferry_objects"
    _id = "id"
    # Concurrent completions add to different rows of a source's totals (no lock queue).
    _shard = f"mod(pg_backend_pid(), {TOTALS_SHARDS})"
    _greatest = "greatest"
    _dead_letter_ddl = (
        "CREATE TABLE IF NOT EXISTS logferry_dead_letters (id BIGSERIAL PRIMARY KEY, "
        "source TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL, start_pos BIGINT NOT NULL, "
        "end_pos BIGINT NOT NULL, sink TEXT NOT NULL, error_class TEXT NOT NULL, "
        "error TEXT NOT NULL, nbytes BIGINT NOT NULL, created DOUBLE PRECISION NOT NULL, "
        "records BYTEA NOT NULL)"
    )

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        try:
            with conn.transaction():
                # Taken before CREATE TABLE IF NOT EXISTS, which itself races in Postgres.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS logferry_schema_version (version INTEGER NOT NULL)"
                )
                row = conn.execute("SELECT max(version) FROM logferry_schema_version").fetchone()
                current = (row[0] if row else None) or 0
                if current > len(MIGRATIONS):
                    raise ConfigError(
                        f"ledger {self.display} has schema v{current}, newer than this logferry "
                        f"understands (v{len(MIGRATIONS)}): upgrade logferry"
                    )
                for version in range(current + 1, len(MIGRATIONS) + 1):
                    for statement in MIGRATIONS[version - 1]:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO logferry_schema_version (version) VALUES (%s)", (version,)
                    )
        except psycopg.errors.QueryCanceled as exc:
            raise self._failure(exc) from None
        except psycopg.Error as exc:
            raise ConfigError(
                f"{self.display} is not a usable ledger: {self._reason(exc)}"
            ) from None

    def lookup(self, source: str, keys: Iterable[str]) -> dict[str, Seen]:
        """Map each known key to its most recently updated row."""
        found: dict[str, Seen] = {}
        rows = self._rows(
            "SELECT key, etag, status, attempts FROM logferry_objects "
            "WHERE source = ? AND key = ANY(?) ORDER BY updated, id",
            (source, list(keys)),
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
        """Claim ``obj`` in one transaction holding the row lock, so two hosts cannot both win."""
        now = time.time()
        ident = (source, obj.key, obj.etag)

        def work(run: Run, attempt: int) -> Claim | None:
            # Retried after a dropped connection, a claim that committed finds the row ours
            # (held by ``owner``) and claims it again: one attempt too many is counted.
            row = None
            # A row is locked, or inserted by us; a concurrent purge between the failed insert
            # and the select can only happen a handful of times, hence the bounded loop.
            for _ in range(5):
                _, found = run(
                    "SELECT status, position, attempts, owner, lease_until, cursor, lines, bytes "
                    f"FROM logferry_objects WHERE {_ROW} FOR UPDATE",
                    ident,
                )
                if found:
                    row = found[0]
                    break
                # ON CONFLICT waits for a concurrent inserter and yields to it if it commits.
                _, inserted = run(
                    "INSERT INTO logferry_objects (source, key, etag, size, last_modified_ms, "
                    "status, attempts, owner, lease_until, first_seen, updated) "
                    "VALUES (?, ?, ?, ?, ?, 'active', 1, ?, ?, ?, ?) "
                    "ON CONFLICT (source, key, etag) DO NOTHING RETURNING id",
                    (*ident, obj.size, obj.last_modified_ms, owner, now + lease_seconds, now, now),
                )
                if inserted:
                    return Claim(source, obj.key, obj.etag, owner, 0, 1)
            if row is None:
                raise RuntimeError(f"ledger row for {obj.key} keeps vanishing during a claim")
            return self._claim_row(run, ident, row, owner, now, lease_seconds, force, max_attempts)

        return self._atomic(work)

    def check_writable(self) -> None:
        """A round trip in a read-write transaction."""
        # A readiness probe answers now: no waiting out an outage.
        rows = self._atomic(
            lambda run, attempt: run("SHOW transaction_read_only", ())[1], patience=0
        )
        if rows and rows[0][0] == "on":
            raise LedgerError(f"ledger {self.display} is read-only")

    def close(self) -> None:
        """Close the pool and its connections."""
        self._pool.close()
