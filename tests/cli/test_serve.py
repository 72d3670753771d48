"""``logferry serve``: a port in use is a one-line usage error; a free one serves the API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import run_cli
from tests.helpers import wait_for


def test_port_in_use_exits_2_naming_the_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        p = run_cli("serve", "--store", f"duckdb:///{tmp_path}/s.duckdb", "--port", str(port))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use"
    ]


def test_serves_on_a_free_port(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "serve", "--store", f"duckdb:///{tmp_path}/s.duckdb",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=20, message=lambda: "serve did not answer")
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal
    assert f"serving on http://127.0.0.1:{port}" in err
