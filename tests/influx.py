"""A real InfluxDB 1.x server for tests: ``influxd`` on a free loopback port in a temp dir.

Import the fixture into a test module (``from tests.influx import influxdb  # noqa: F401``)
or use :class:`InfluxServer` as a context manager. When ``influxd`` is missing it is
installed once per machine with ``apt-get install -y influxdb`` (Debian's package), under a
file lock so parallel sessions do not race; a failed install fails the tests, never skips.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from tests.helpers import free_port, wait_for

__all__ = ["InfluxServer", "ensure_influxd", "influxdb"]

TEST_DB = "logferry_test"
_LOCK_FILE = Path(tempfile.gettempdir()) / "logferry-influxdb-install.lock"
_START_TIMEOUT = 30.0


def ensure_influxd() -> str:
    """Path of ``influxd``, installing Debian's ``influxdb`` package first when missing."""
    found = shutil.which("influxd") or (
        "/usr/bin/influxd" if Path("/usr/bin/influxd").exists() else None
    )
    if found:
        return found
    _LOCK_FILE.touch(exist_ok=True)
    with _LOCK_FILE.open("w") as lock:
        # Another session may be installing right now: wait for it, then look again.
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = shutil.which("influxd")
        if found:
            return found
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "influxdb"]):
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.fail(f"installing InfluxDB failed at `{' '.join(step)}`: {exc}")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                pytest.fail(
                    f"installing InfluxDB failed at `{' '.join(step)}` "
                    f"(exit {done.returncode}): {' | '.join(tail)}"
                )
    found = shutil.which("influxd")
    if not found:
        pytest.fail("`apt-get install -y influxdb` succeeded but influxd is not on PATH")
    return found


_CONFIG = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{root}/meta"

[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  query-log-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false

[logging]
  level = "warn"

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"""


class InfluxServer:
    """``influxd`` with a generated config; ``url``, ``query()`` and ``create_database()``.

    With ``auth=True`` an admin ``user``/``password`` is created and required on every call.
    """

    def __init__(
        self, *, database: str = TEST_DB, auth: bool = False, user: str = "admin",
        password: str = "test-influx-password",
    ) -> None:  # fmt: skip
        self.database = database
        self.auth = auth
        self.user = user
        self.password = password
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._client = httpx.Client(timeout=30.0)

    def __enter__(self) -> InfluxServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Write the config, start ``influxd``, wait for ``/ping``, create the database."""
        influxd = ensure_influxd()
        self._tmp = tempfile.TemporaryDirectory(prefix="logferry-influx-")
        root = Path(self._tmp.name)
        http_port = free_port()
        conf = root / "influxdb.conf"
        conf.write_text(
            _CONFIG.format(
                root=root,
                rpc_port=free_port(),
                http_port=http_port,
                auth="true" if self.auth else "false",
            )
        )
        self.url = f"http://127.0.0.1:{http_port}"
        log = (root / "influxd.log").open("wb")
        self._proc = subprocess.Popen(
            [influxd, "-config", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        proc = self._proc

        def answering() -> bool:
            if proc.poll() is not None:
                text = (root / "influxd.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"influxd exited with {proc.returncode}: {text}")
            try:
                return self._client.get(f"{self.url}/ping").status_code == 204
            except httpx.TransportError:
                return False

        try:
            wait_for(answering, _START_TIMEOUT, 0.05, "influxd did not answer /ping")
        except pytest.fail.Exception:
            self.stop()
            raise
        if self.auth:
            # The first admin may be created without credentials; everything after needs them.
            self._post(
                f"CREATE USER {self.user} WITH PASSWORD '{self.password}' WITH ALL PRIVILEGES",
                anonymous=True,
            )
        self.create_database(self.database)

    def stop(self) -> None:
        """Terminate ``influxd`` and remove its directory."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._client.close()

    def _post(
        self, influxql: str, db: str | None = None, *, anonymous: bool = False
    ) -> dict[str, Any]:
        params = {"q": influxql}
        if db:
            params["db"] = db
        auth = (
            httpx.BasicAuth(self.user, self.password)
            if self.auth and not anonymous
            else httpx.Auth()
        )
        resp = self._client.post(f"{self.url}/query", data=params, auth=auth)
        if resp.status_code != 200:
            raise RuntimeError(f"InfluxQL failed: HTTP {resp.status_code}: {resp.text.strip()}")
        body: dict[str, Any] = resp.json()
        for result in body.get("results", []):
            if "error" in result:
                raise RuntimeError(f"InfluxQL error: {result['error']}")
        return body

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE name`` (idempotent)."""
        self._post(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE name``: tests that need an empty database drop and recreate it."""
        self._post(f'DROP DATABASE "{name}"')

    def query(self, influxql: str, db: str | None = None) -> list[dict[str, Any]]:
        """Rows of every series of the first result, as dicts (``time`` as epoch ns)."""
        params = {"q": influxql, "db": db or self.database, "epoch": "ns"}
        auth = httpx.BasicAuth(self.user, self.password) if self.auth else httpx.Auth()
        resp = self._client.get(f"{self.url}/query", params=params, auth=auth)
        if resp.status_code != 200:
            raise RuntimeError(
                f"InfluxQL query failed: HTTP {resp.status_code}: {resp.text.strip()}"
            )
        results = resp.json().get("results", [])
        if not results:
            return []
        if "error" in results[0]:
            raise RuntimeError(f"InfluxQL error: {results[0]['error']}")
        rows: list[dict[str, Any]] = []
        for series in results[0].get("series", []):
            tags = series.get("tags") or {}
            for values in series["values"]:
                rows.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return rows


@pytest.fixture(scope="session")
def influxdb() -> Iterator[InfluxServer]:
    """A session-wide InfluxDB 1.x server (no auth) with the ``logferry_test`` database."""
    with InfluxServer() as server:
        yield server
