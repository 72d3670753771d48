"""Ledger backends and the URL that picks one."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from logferry.errors import ConfigError
from logferry.ledger.base import (
    Claim,
    ClaimLostError,
    Entry,
    Ledger,
    LedgerError,
    SourceStatus,
    Status,
)
from logferry.ledger.sqlite import SQLiteLedger
from logferry.registry import Component, NoOptions

__all__ = [
    "Claim",
    "ClaimLostError",
    "Entry",
    "Ledger",
    "LedgerError",
    "SQLiteLedger",
    "SourceStatus",
    "Status",
    "default_ledger_path",
    "open_ledger",
]


def default_ledger_path() -> Path:
    """Where the ledger lives when none is given: the user's state directory."""
    return Path(platformdirs.user_state_dir("logferry")) / "ledger.db"


def open_ledger(url: str | None = None, *, create: bool = True, readonly: bool = False) -> Ledger:
    """Open the ledger named by ``url``, ``$LOGFERRY_LEDGER``, or the default path.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:``, a plain path,
    or ``postgresql://user:password@host:port/db`` (also ``postgres://``).

    Commands that only look (``status``, ``errors``) pass ``create=False`` (a ledger that is
    not there is an error, not a new empty one) and ``readonly=True`` (nothing is written,
    so a ledger on a read-only filesystem can be read).
    """
    url = url or os.environ.get("LOGFERRY_LEDGER") or str(default_ledger_path())
    if "://" not in url:
        return SQLiteLedger(url, create=create, readonly=readonly)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"bad ledger URL {_masked(url)!r}: {exc}") from None
    if parts.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"bad ledger URL {url!r}: use sqlite:///PATH or sqlite:////ABS/PATH")
        return SQLiteLedger(path, create=create, readonly=readonly)
    if parts.scheme in ("postgres", "postgresql"):
        # Imported here so logferry runs without psycopg when the ledger is SQLite.
        try:
            from logferry.ledger.postgres import PostgresLedger
        except ImportError as exc:
            raise ConfigError(
                f"a PostgreSQL ledger needs psycopg ({exc.name} is missing): "
                "pip install 'psycopg[binary]' psycopg-pool"
            ) from None
        return PostgresLedger(url, create=create, readonly=readonly)
    raise ConfigError(
        f"unknown ledger URL scheme {parts.scheme!r}: use sqlite:///PATH or postgresql://HOST/DB"
    )


# Registry declarations (see logferry.registry). ``open_ledger`` stays the one opener; these
# let ``validate``, ``--help`` and docs list the ledger backends with the other components.


def _check_sqlite(url: str, options: NoOptions) -> None:
    if ("://" in url and not url.startswith("sqlite:///")) or url == "sqlite:///":
        raise ConfigError("bad ledger URL: use sqlite:///PATH or sqlite:////ABS/PATH")


def _check_postgres(url: str, options: NoOptions) -> None:
    """Nothing to check without connecting; psycopg is needed only to open."""


def _open(url: str, options: NoOptions) -> Ledger:
    return open_ledger(url)


COMPONENTS = (
    Component(
        name="sqlite",
        kind="ledger",
        schemes=("sqlite", ""),
        options=NoOptions,
        check=_check_sqlite,
        open=_open,
        usage="sqlite:///PATH, a path",
        summary="an embedded SQLite file (the default)",
    ),
    Component(
        name="postgres",
        kind="ledger",
        schemes=("postgresql", "postgres"),
        options=NoOptions,
        check=_check_postgres,
        open=_open,
        usage="postgresql://USER@HOST:PORT/DB",
        summary="PostgreSQL, shared by runners on many hosts",
    ),
)


def _masked(url: str) -> str:
    """``url`` without what could be a password, for a URL too broken to parse."""
    return re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)
