"""Ledger fixtures: every backend behind one ``ledger`` fixture, Postgres in a throwaway database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from logferry.ledger import Ledger, open_ledger

# The server's maintenance database; each test gets its own database created from here.
PG_ADMIN_URL = os.environ.get("LOGFERRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
PG_START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@dataclass(frozen=True)
class Backend:
    """One ledger store a test may open several times (as several runners would)."""

    name: str
    url: str

    def open(self) -> Ledger:
        """A new ledger handle on this store."""
        return open_ledger(self.url)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Any]:
    """An autocommit connection to the test server; fails (never skips) when it is down."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a missing dependency must fail loudly
        pytest.fail("psycopg is missing: pip install -e '.[dev]'", pytrace=False)
    try:
        conn = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0]
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({reason}); "
            f"start it with: {PG_START_HINT}",
            pytrace=False,
        )
    yield conn
    conn.close()


@pytest.fixture()
def pg_url(pg_admin: Any) -> Iterator[str]:
    """URL of a fresh database ``logferry_test_<random>``, dropped after the test."""
    name = f"logferry_test_{uuid.uuid4().hex[:12]}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}").geturl()
    finally:
        # FORCE ends connections a failed test may have left open.
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each ledger backend in turn, on an empty store."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path}/ledger.db")
    return Backend("postgres", request.getfixturevalue("pg_url"))


@pytest.fixture()
def ledger(backend: Backend) -> Iterator[Ledger]:
    """An open ledger on an empty store of each backend."""
    led = backend.open()
    yield led
    led.close()
