"""The stats API and ``logferry stats`` against a DuckDB store (and a real InfluxDB).

Expected numbers come from an independent computation over the raw log lines in plain
Python, with the definitions documented in :mod:`logferry.stats.queries`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from logferry.generate.api_requests import ApiRequestGenerator
from logferry.sinks.duckdb import DDL
from logferry.stats.app import create_app
from tests.conftest import run_cli

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)  # spans three UTC days
HOURS = 50
TO = (START + timedelta(hours=HOURS)).date()


def _log_lines() -> list[str]:
    gen = ApiRequestGenerator(customers=7, seed=11)
    lines: list[str] = []
    for hour in range(HOURS):
        # Uneven counts per hour, so group sizes hit both p99 rank cases.
        n = 37 + (hour * 13) % 41
        lines += gen.lines(n, START.timestamp() + hour * 3600, 3600)
    # Durations that tie, a zero and a slow outlier, for one customer.
    stamp = START.strftime("%Y-%m-%d %H:%M:%S")
    lines += [f"{stamp} cust_tie /x 200 0.5\n", f"{stamp} cust_tie /x 503 0.5\n"]
    lines += [f"{stamp} cust_tie /x 200 0.0\n", f"{stamp} cust_tie /x 404 12.25\n"]
    return lines


LINES = _log_lines()


def _parse(line: str) -> tuple[str, date, int, float]:
    d, _t, customer, _path, status, duration = line.split()
    return customer, date.fromisoformat(d), int(status), float(duration)


def _expected(values: list[tuple[int, float]], p99_rank: Any) -> dict[str, Any]:
    """Stats by the documented definitions, computed without the store."""
    n = len(values)
    ok = sum(1 for s, _ in values if 200 <= s < 400)
    xs = sorted(d for _, d in values)
    median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return {
        "total_requests": n,
        "successful_requests": ok,
        "failed_requests": n - ok,
        "uptime_percent": ok / n * 100,
        "avg_latency": math.fsum(xs) / n,
        "median_latency": median,
        "p99_latency": xs[p99_rank(n) - 1],
    }


def duckdb_rank(n: int) -> int:
    """Nearest rank: ceil(0.99 n), in integers."""
    return -(-n * 99 // 100)


def influx_rank(n: int) -> int:
    """InfluxQL PERCENTILE: floor(0.99 n + 0.5), at least 1."""
    return max(1, (n * 99 + 50) // 100)


def expected_for(customer: str, start: date, end: date, rank: Any) -> dict[str, Any]:
    by_day: dict[date, list[tuple[int, float]]] = defaultdict(list)
    for line in LINES:
        c, d, status, duration = _parse(line)
        if c == customer and start <= d <= end:
            by_day[d].append((status, duration))
    every = [v for d in sorted(by_day) for v in by_day[d]]
    return {
        "days": [{"date": d.isoformat(), **_expected(by_day[d], rank)} for d in sorted(by_day)],
        "total": _expected(every, rank),
    }


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert [d["date"] for d in got["days"]] == [d["date"] for d in want["days"]]
    for g, w in zip([*got["days"], got["total"]], [*want["days"], want["total"]], strict=True):
        for key in ("total_requests", "successful_requests", "failed_requests"):
            assert g[key] == w[key], key
        for key in ("uptime_percent", "avg_latency", "median_latency", "p99_latency"):
            assert g[key] == pytest.approx(w[key], abs=1e-9, rel=0), key


def populate_duckdb(path: Path, lines: list[str]) -> None:
    """Write ``lines`` into the contract schema directly (what the DuckDB sink stores)."""
    con = duckdb.connect(str(path))
    con.execute(DDL)
    rows = []
    for i, line in enumerate(lines):
        customer, _d, status, duration = _parse(line)
        ts = datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        rows.append(
            ("file", "api_requests.log", i, ts, line.rstrip("\n"), "api-request",
             customer, line.split()[3], status, duration, 200 <= status < 400)
        )  # fmt: skip
    rows.append(("file", "api_requests.log", len(rows), START, "garbage", "api-request",
                 None, None, None, None, None))  # fmt: skip
    con.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("stats") / "store.duckdb"
    populate_duckdb(path, LINES)
    return f"duckdb:///{path}"


@pytest.fixture(scope="module")
def client(store: str) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


@pytest.mark.parametrize("customer", ["cust_1", "cust_4", "cust_tie"])
def test_customer_stats_equal_an_independent_computation(client: TestClient, customer: str) -> None:
    start = START.date()
    resp = client.get(
        f"/customers/{customer}/stats", params={"from_date": str(start), "to_date": str(TO)}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["customer_id"] == customer
    assert len(body["days"]) == (3 if customer != "cust_tie" else 1)
    assert_matches(body, expected_for(customer, start, TO, duckdb_rank))


def test_date_range_limits_days(client: TestClient) -> None:
    day = (START + timedelta(days=1)).date()
    body = client.get(
        "/customers/cust_2/stats", params={"from_date": str(day), "to_date": str(day)}
    ).json()
    assert [d["date"] for d in body["days"]] == [str(day)]
    assert_matches(body, expected_for("cust_2", day, day, duckdb_rank))


def test_to_date_defaults_to_today(client: TestClient) -> None:
    body = client.get("/customers/cust_3/stats", params={"from_date": str(START.date())}).json()
    assert body["to_date"] == str(datetime.now(UTC).date())
    assert_matches(body, expected_for("cust_3", START.date(), TO, duckdb_rank))


def test_all_customers(client: TestClient) -> None:
    resp = client.get(
        "/customers/stats", params={"from_date": str(START.date()), "to_date": str(TO)}
    )
    assert resp.status_code == 200
    customers = resp.json()["customers"]
    names = [c["customer_id"] for c in customers]
    assert names == sorted({_parse(line)[0] for line in LINES})
    for c in customers:
        assert_matches(c, expected_for(c["customer_id"], START.date(), TO, duckdb_rank))


def test_known_customer_without_requests_in_range(client: TestClient) -> None:
    body = client.get(
        "/customers/cust_1/stats", params={"from_date": "2020-01-01", "to_date": "2020-01-02"}
    ).json()
    assert body["days"] == []
    assert body["total"]["total_requests"] == 0
    assert body["total"]["p99_latency"] is None


@pytest.mark.parametrize(
    "customer", ["nobody", "cust_1' OR '1'='1", 'x"; DROP TABLE records; --', "%", "cust_%"]
)
def test_unknown_and_injection_looking_customers_are_404(client: TestClient, customer: str) -> None:
    resp = client.get(f"/customers/{customer}/stats", params={"from_date": str(START.date())})
    assert resp.status_code == 404, resp.text
    # The table is intact.
    assert (
        client.get("/customers/cust_1/stats", params={"from_date": str(START.date())}).status_code
        == 200
    )


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"from_date": "2026-3-1"},
        {"from_date": "yesterday"},
        {"from_date": "2026-02-30"},
        {"from_date": "2026-03-01T00:00:00"},
        {"from_date": "1772323200"},
        {"from_date": "2026-03-02", "to_date": "2026-03-01"},
        {"from_date": str(datetime.now(UTC).date() + timedelta(days=1))},
        {"from_date": "2026-03-01", "to_date": str(datetime.now(UTC).date() + timedelta(days=1))},
    ],
)
def test_bad_dates_are_422(client: TestClient, params: dict[str, str]) -> None:
    assert client.get("/customers/cust_1/stats", params=params).status_code == 422
    assert client.get("/customers/stats", params=params).status_code == 422


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/customers/stats", "/customers/{customer_id}/stats"} <= set(spec["paths"])


def test_reads_while_another_process_writes_briefly(store: str, client: TestClient) -> None:
    from logferry.sinks.duckdb import parse_duckdb_url

    path, _ = parse_duckdb_url(store)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
         " time.sleep(0.5); c.close()", str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        resp = client.get("/customers/cust_1/stats", params={"from_date": str(START.date())})
        assert resp.status_code == 200, resp.text
    finally:
        holder.wait(timeout=30)


def test_stats_cli_table_and_json(store: str) -> None:
    args = [
        "stats",
        "cust_5",
        "--from-date",
        str(START.date()),
        "--to-date",
        str(TO),
        "--store",
        store,
    ]
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    assert_matches(json.loads(done.stdout), expected_for("cust_5", START.date(), TO, duckdb_rank))
    table = run_cli(*args)
    assert table.returncode == 0, table.stderr
    assert "total" in table.stdout
    assert str(START.date()) in table.stdout
    bad = run_cli("stats", "cust_5", "--from-date", "2026-13-01", "--store", store)
    assert bad.returncode == 2
    assert "from_date" in bad.stderr
    unknown = run_cli("stats", "nobody", "--from-date", str(START.date()), "--store", store)
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr


def _influx_fixture() -> Any:
    try:
        from tests import influx
    except ImportError as exc:  # pragma: no cover - must fail loudly, never skip
        pytest.fail(f"tests/influx.py (the InfluxDB server fixture) is missing: {exc}")
    return influx


def test_influxdb_backend_equals_independent_computation() -> None:
    """Lines written as the InfluxDB sink writes points; the API's numbers checked again."""
    influx = _influx_fixture()
    from logferry.codecs.formats import DecodeContext, get_format
    from logferry.records import Batch
    from logferry.sinks.influxdb import InfluxDBSink

    with influx.InfluxServer(database="stats") as server:
        url = f"influxdb+http://{server.url.removeprefix('http://')}/stats?measurement=api_requests"
        sink = InfluxDBSink.from_url(url)
        data = "".join(LINES).encode()
        chunk = next(
            iter(get_format("api-request").decode([data], DecodeContext("api_requests.log", 0)))
        )
        batch = Batch("file", "api_requests.log", 0, len(chunk), chunk.lines, chunk.timestamps,
                      chunk.fields, format="api-request", columns=chunk.columns)  # fmt: skip
        sink.prepare(batch)
        sink.write(batch)
        sink.close()
        with TestClient(create_app(url)) as c:
            for customer in ("cust_1", "cust_tie"):
                resp = c.get(
                    f"/customers/{customer}/stats",
                    params={"from_date": str(START.date()), "to_date": str(TO)},
                )
                assert resp.status_code == 200, resp.text
                assert_matches(resp.json(), expected_for(customer, START.date(), TO, influx_rank))
            allc = c.get(
                "/customers/stats", params={"from_date": str(START.date()), "to_date": str(TO)}
            ).json()
            assert len(allc["customers"]) == 8
            assert (
                c.get(
                    "/customers/x' OR 1=1/stats", params={"from_date": str(START.date())}
                ).status_code
                == 404
            )
