"""PostgreSQL-only ledger behaviour: URLs, secrets, migrations, lazy import."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from logferry.errors import ConfigError
from logferry.ledger import open_ledger
from logferry.ledger.postgres import MIGRATIONS, PostgresLedger, redact_url
from logferry.records import ObjectInfo

SECRET = "s3cr3t-pw"


def _with_password(url: str, password: str = SECRET) -> str:
    parts = urlsplit(url)
    return parts._replace(
        netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    ).geturl()


def _versions(url: str) -> list[int]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM logferry_schema_version ORDER BY version")
        return [r[0] for r in rows]


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_ledger_postgres_urls(pg_url: str, scheme: str) -> None:
    led = open_ledger(scheme + pg_url[pg_url.index(":") :])
    assert isinstance(led, PostgresLedger)
    assert led.claim("s3://b", ObjectInfo("k", 1, "e", 0), "me", 60)
    led.close()


def test_password_is_never_shown(pg_url: str) -> None:
    # trust auth ignores the password, so the ledger opens and we can inspect it
    led = open_ledger(_with_password(pg_url))
    assert SECRET not in led.display
    assert ":***@" in led.display
    assert SECRET not in repr(led)
    assert SECRET not in str(led)
    led.close()


def test_connection_error_is_a_config_error_without_password(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    unreachable = parts._replace(netloc=f"postgres:{SECRET}@127.0.0.1:1").geturl()
    with pytest.raises(
        ConfigError, match=r"cannot connect to ledger postgresql://postgres:\*\*\*@"
    ) as info:
        open_ledger(unreachable + "?connect_timeout=3")
    assert SECRET not in str(info.value)
    assert "\n" not in str(info.value)
    missing_db = _with_password(parts._replace(path="/logferry_no_such_db").geturl())
    with pytest.raises(ConfigError, match="logferry_no_such_db") as info:
        open_ledger(missing_db)
    assert SECRET not in str(info.value)


def test_bad_url_is_a_config_error_without_password() -> None:
    with pytest.raises(ConfigError, match="bad ledger URL") as info:
        open_ledger(f"postgresql://u:{SECRET}@h/db?no_such_option=1")
    assert SECRET not in str(info.value)


def test_redact_url_forms() -> None:
    assert redact_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgres://u@h/db") == "postgres://u@h/db"
    assert redact_url("postgresql://h1,h2/db") == "postgresql://h1,h2/db"
    assert (
        redact_url("postgresql://h/db?sslmode=require&password=x")
        == "postgresql://h/db?sslmode=require&password=***"
    )


def test_newer_schema_is_refused(pg_url: str) -> None:
    import psycopg

    PostgresLedger(pg_url).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO logferry_schema_version VALUES (99)")
    with pytest.raises(ConfigError, match="upgrade logferry"):
        PostgresLedger(pg_url)


def test_concurrent_migrators_apply_each_step_once(pg_url: str) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []
    opened: list[Any] = []

    def open_one() -> None:
        barrier.wait()
        try:
            opened.append(PostgresLedger(pg_url))
        except BaseException as exc:  # surfaced below: pytest misses thread errors
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for led in opened:
        led.close()
    assert errors == []
    assert _versions(pg_url) == list(range(1, len(MIGRATIONS) + 1))
    PostgresLedger(pg_url).close()  # reopening applies nothing new
    assert _versions(pg_url) == list(range(1, len(MIGRATIONS) + 1))


def test_error_with_nul_byte_is_stored(pg_url: str) -> None:
    led = PostgresLedger(pg_url)
    claim = led.claim("s3://b", ObjectInfo("k", 1, "e", 0), "me", 60)
    assert claim
    led.fail(claim, "bad byte \x00 here")
    entry = led.get("s3://b", "k", "e")
    assert entry
    assert entry.last_error == "bad byte  here"
    led.close()


def test_package_imports_without_psycopg() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['psycopg_pool'] = None\n"
        "from logferry.errors import ConfigError\n"
        "from logferry.ledger import open_ledger\n"
        "open_ledger('sqlite:///:memory:').close()\n"
        "try:\n"
        "    open_ledger('postgresql://u@127.0.0.1/db')\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install" in out.stdout
    assert "psycopg" in out.stdout
