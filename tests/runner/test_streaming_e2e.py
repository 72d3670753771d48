"""Issue 6 end to end: generator → growing file → tail → InfluxDB and DuckDB → stats API.

A real ``influxd`` (tests/influx.py installs Debian's package when it is missing), the
``logferry run`` daemon in a real process killed with SIGKILL once mid-way, invalid lines
in the log, and the API's numbers checked against an independent computation from the
raw log file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from logferry.sinks.duckdb import open_store_readonly
from logferry.stats.app import create_app
from tests.conftest import run_cli
from tests.helpers import wait_for
from tests.influx import influxdb  # noqa: F401  (the session's InfluxDB server)
from tests.stats.test_stats_api import _expected, assert_matches, duckdb_rank, influx_rank

TOTAL = 6000


def daemon(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "logferry", "run", "-c", str(cfg), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip


def duck_count(path: Path) -> int:
    try:
        con = open_store_readonly(path)
    except Exception:
        return 0  # not created yet, or busy: ask again
    try:
        return int(con.execute("SELECT count(*) FROM records").fetchone()[0])  # type: ignore[index]
    except Exception:
        return 0
    finally:
        con.close()


def expected(lines: list[str], customer: str, rank: Any) -> dict[str, Any]:
    by_day: dict[date, list[tuple[int, float]]] = defaultdict(list)
    for line in lines:
        d, _t, c, _p, status, duration = line.split()
        if c == customer:
            by_day[date.fromisoformat(d)].append((int(status), float(duration)))
    every = [v for d in sorted(by_day) for v in by_day[d]]
    return {
        "days": [{"date": d.isoformat(), **_expected(by_day[d], rank)} for d in sorted(by_day)],
        "total": _expected(every, rank),
    }


def test_generator_tail_influx_duckdb_api(tmp_path: Path, influxdb) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    db = "e2e_" + uuid.uuid4().hex[:8]
    influxdb.create_database(db)
    log = tmp_path / "logs" / "api_requests.log"
    log.parent.mkdir()
    duck_url = f"duckdb:///{tmp_path}/store.db"
    influx_url = f"influxdb+{influxdb.url}/{db}?measurement=api_requests"
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\nbatch_wait: 0.2\nbatch_lines: 500\n"
        f"sinks:\n  duck: {{url: '{duck_url}'}}\n  influx: {{url: '{influx_url}'}}\n"
        f"sources:\n  api:\n    url: 'tail://{log.parent}/*.log'\n"
        f"    format: api-request\n    sinks: [duck, influx]\n"
    )
    gen = subprocess.Popen(
        [sys.executable, "-m", "logferry", "generate", "api-requests", "--out", str(log),
         "--rate", "3000", "--batch", "150", "--max", str(TOTAL), "--customers", "5",
         "--seed", "7", "--start", "2026-11-20T23:59:00"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    first = daemon(cfg)
    try:
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)  # crash mid-stream: the restart resumes, no loss
        first.wait()
        assert gen.wait(timeout=60) == 0, gen.stderr.read() if gen.stderr else ""
        with log.open("a") as f:  # invalid lines: shipped raw and counted, as on buckets
            f.write("this is not a request\n2026-11-21 00:00:01 cust_1 /x 200 not-a-number\n")
        second = daemon(cfg)
        wait_for(
            lambda: duck_count(tmp_path / "store.db") >= TOTAL + 2,
            timeout=60,
            interval=0.2,
            message="every line in DuckDB",
        )
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    assert duck_count(tmp_path / "store.db") == TOTAL + 2  # exactly once, crash included
    points = influxdb.query("SELECT COUNT(*) FROM api_requests", db)
    raw = log.read_text().splitlines()
    good = [x for x in raw if len(x.split()) == 6 and not x.endswith("not-a-number")]
    assert len(good) == TOTAL
    influx_count = max(v for k, v in points[0].items() if k.startswith("count_") and v)
    assert influx_count == TOTAL
    # the API's numbers equal an independent computation from the raw log
    for url, rank in ((duck_url, duckdb_rank), (influx_url, influx_rank)):
        with TestClient(create_app(url)) as client:
            for customer in ("cust_1", "cust_4"):
                # The exact path; the default rollups are checked against it in tests/stats.
                r = client.get(
                    f"/customers/{customer}/stats",
                    params={"from_date": "2026-11-20", "exact": "true"},
                )
                assert r.status_code == 200, r.text
                assert_matches(r.json(), expected(good, customer, rank))
    # Invalid lines are not failures (nothing was lost: they shipped as they are), so the
    # error queue holds nothing, for streams as for buckets.
    p = run_cli("errors", "--ledger", f"sqlite:///{tmp_path}/l.db", "--json")
    assert p.stdout.strip() == ""
