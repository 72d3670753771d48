"""A store and a ledger filled by real runs, and ``logferry serve`` over them.

``filled``: API request lines shipped with the library from a local directory into a DuckDB
store (one object there is a broken gzip: a failed object in the error queue), and two
followed files shipped to a Mezmo server that refuses them (400): two dead letters.
``server``: ``python -m logferry serve`` on a free loopback port with a known token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

import logferry
from logferry.config import ShipOptions
from logferry.generate.api_requests import ApiRequestGenerator
from logferry.sinks.mezmo import MezmoSink
from logferry.testing.mezmo_server import MezmoServer
from tests.helpers import free_port, wait_for

TOKEN = "test-dashboard-token-0123456789abcdef"
#: A key and a customer id that are HTML: the pages must show them as text.
HOSTILE_KEY = "broken<img src=x onerror=alert(1)>.log.gz"
HOSTILE_CUSTOMER = "cust_<svg/onload=alert(1)>"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Filled:
    """Where the real runs left their data."""

    root: Path
    logs: Path
    store: str
    ledger: str
    drained: Path
    lines: int


def _request_lines(seed: int, count: int, start: float, span: float) -> str:
    return "".join(ApiRequestGenerator(customers=6, seed=seed).lines(count, start, span))


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """Ship API request lines into DuckDB, with one failed object and two dead letters."""
    root = tmp_path_factory.mktemp("web")
    logs = root / "logs"
    logs.mkdir()
    now = time.time()
    start = now - 3 * 86400  # four UTC days up to now, never in the future
    a = _request_lines(21, 1500, start, 3 * 86400 - 60)
    b = _request_lines(22, 900, start + 3600, 3 * 86400 - 7200)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 3600))
    hostile = f"{stamp} {HOSTILE_CUSTOMER} /x 503 0.25\n{stamp} {HOSTILE_CUSTOMER} /x 200 0.5\n"
    (logs / "api_requests_a.log").write_text(a)
    (logs / "api_requests_b.log").write_text(b + hostile)
    (logs / HOSTILE_KEY).write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(64))
    lines = a.count("\n") + b.count("\n") + 2

    store = f"duckdb:///{root / 'store.db'}"
    ledger = str(root / "ledger.db")
    shipped = logferry.ship(str(logs), store, ShipOptions(format="api-request"), ledger=ledger)
    assert shipped.lines == lines, shipped
    assert [f.key for f in shipped.failed] == [HOSTILE_KEY]

    stream = root / "stream"
    stream.mkdir()
    (stream / "app-1.log").write_text("".join(f"one {i}\n" for i in range(40)))
    (stream / "app-2.log").write_text("".join(f"two {i}\n" for i in range(25)))
    with MezmoServer("web-test-key") as mezmo:
        mezmo.fail_next(10_000, 400)
        sink = MezmoSink(mezmo.endpoint, ingestion_key="web-test-key")
        refused = logferry.ship(f"tail://{stream}/*.log", sink, ledger=ledger)
    assert refused.dead_letters == 65, refused
    return Filled(root, logs, store, ledger, root / "drained", lines)


@dataclass(frozen=True)
class Server:
    """A running ``logferry serve``."""

    url: str
    process: subprocess.Popen[str]
    filled: Filled


@pytest.fixture(scope="session")
def server(filled: Filled) -> Iterator[Server]:
    """``logferry serve`` over ``filled`` with the test token, sampling every 0.5 s."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "LOGFERRY_DASHBOARD_TOKEN": TOKEN}
    log = (filled.root / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "logferry", "serve", "--store", filled.store,
         "--ledger", filled.ledger, "--port", str(port), "--sample-every", "0.5",
         "--drain-to", f"file://{filled.drained}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"serve exited: {(filled.root / 'serve.log').read_text()}")
        try:
            return httpx.get(url + "/dashboard/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, interval=0.2, message="logferry serve did not answer")
        yield Server(url, process, filled)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
