"""Start-up cost: what ``logferry`` imports before it does anything, and what ``ship`` imports.

Every import is paid by every run, and again per copy under ``--processes``; these tests fail
when a module that a command does not need comes back into its import chain (a top-level
import in a shared module is the usual way). They look at ``sys.modules`` in a fresh process;
nothing is timed.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: Never needed to parse a command line or print help.
NOT_FOR_THE_CLI = (
    "asyncio",
    "boto3",
    "duckdb",
    "http.server",
    "httpx",
    "logferry.api",
    "logferry.config",
    "logferry.engine.objects",
    "logferry.sinks",
    "logferry.stats.queries",
    "nats",
    "prometheus_client",
    "pydantic",
    "yaml",
)
#: Not needed to ship a bucket to Mezmo (the stats server, pipeline files, other sinks and
#: queues, the asyncio machinery of NATS). ``http.server`` is: prometheus_client imports it,
#: and the engine counts into Prometheus metrics whether or not they are served.
NOT_FOR_SHIP = (
    "asyncio",
    "duckdb",
    "fastapi",
    "logferry.cli.serve",
    "logferry.cli.worker",
    "logferry.pipeline",
    "logferry.stats.queries",
    "logferry.web",
    "logferry.yamlfile",
    "nats",
    "numpy",
    "uvicorn",
    "yaml",
)


def _loaded(code: str, watch: tuple[str, ...], env: dict[str, str] | None = None) -> list[str]:
    """The modules of ``watch`` loaded when ``code`` ends (``sys.exit`` included)."""
    probe = (
        "import atexit, json, sys\n"
        f"watch = {watch!r}\n"
        "atexit.register(lambda: sys.__stderr__.write("
        "'LOADED ' + json.dumps([m for m in watch if m in sys.modules]) + '\\n'))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", probe + code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    marked = [line for line in p.stderr.splitlines() if line.startswith("LOADED ")]
    assert marked, p.stderr
    loaded: list[str] = json.loads(marked[-1].removeprefix("LOADED "))
    return loaded


def test_importing_the_cli_loads_no_engine_nor_server() -> None:
    assert _loaded("import logferry.cli.main", NOT_FOR_THE_CLI) == []


def test_importing_logferry_loads_nothing_heavy() -> None:
    # ``from logferry import ship`` still works: the names load on first use.
    assert _loaded("import logferry", NOT_FOR_THE_CLI) == []
    assert _loaded("from logferry import ShipOptions, ship", ("logferry.api",)) == ["logferry.api"]


def test_ship_s3_to_mezmo_loads_only_what_it_uses(
    s3: Any, bucket: str, s3_endpoint: str, mezmo: Any, tmp_path: Path
) -> None:
    s3.put_object(
        Bucket=bucket,
        Key="a.ndjson.gz",
        Body=gzip.compress(b'{"timestamp":"2024-05-01T00:00:00Z","msg":"x"}\n' * 3),
    )
    argv = [
        "logferry", "ship", f"s3://{bucket}/", "--endpoint-url", s3_endpoint,
        "--to", mezmo.url, "--ledger", f"sqlite:///{tmp_path / 'l.db'}", "--quiet", "--json",
    ]  # fmt: skip
    code = f"import sys\nsys.argv = {argv!r}\nfrom logferry.cli.main import main\nmain()"
    assert _loaded(code, NOT_FOR_SHIP) == []
    assert len(mezmo.lines) == 3  # it did ship
