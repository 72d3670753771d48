"""The original stats service's path, and its median, for people moving over from it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from logferry.stats.app import LEGACY_ALL_PATH, create_app
from tests.helpers import free_port, wait_for
from tests.stats.test_stats_api import LINES, START, TO, populate_duckdb


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``logferry serve`` in a real process over a DuckDB store."""
    path = tmp_path_factory.mktemp("alias") / "store.duckdb"
    populate_duckdb(path, LINES)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "serve", "--store", f"duckdb:///{path}",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy(),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            return httpx.get(url + "/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=30, message="logferry serve did not answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    "params",
    [
        {"from_date": str(START.date()), "to_date": str(TO)},
        {"from_date": str(START.date())},
        {"from_date": "2020-01-01", "to_date": "2020-01-02"},
    ],
)
def test_the_original_path_answers_as_customers_stats(server: str, params: dict[str, str]) -> None:
    ours = httpx.get(server + "/customers/stats", params=params)
    legacy = httpx.get(server + LEGACY_ALL_PATH, params=params)
    assert ours.status_code == legacy.status_code == 200, legacy.text
    assert legacy.json() == ours.json()
    if "to_date" in params and params["from_date"] != "2020-01-01":
        assert len(legacy.json()["customers"]) == 8


def test_the_original_path_rejects_what_customers_stats_rejects(server: str) -> None:
    for params in ({}, {"from_date": "yesterday"}):
        assert httpx.get(server + LEGACY_ALL_PATH, params=params).status_code == 422


def test_the_median_difference_is_documented_with_the_store_agreeing(tmp_path: Path) -> None:
    day = START.strftime("%Y-%m-%d %H:%M:%S")
    path = tmp_path / "store.duckdb"
    populate_duckdb(path, [f"{day} even /x 200 {d}\n" for d in ("0.8", "0.1", "0.4", "0.2")])
    with TestClient(create_app(f"duckdb:///{path}")) as client:
        spec = client.get("/openapi.json").json()
        body = client.get(LEGACY_ALL_PATH, params={"from_date": str(START.date())}).json()
    (customer,) = body["customers"]
    assert customer["total"]["median_latency"] == pytest.approx(0.3)  # the documented example
    assert sorted([0.8, 0.1, 0.4, 0.2])[4 // 2] == 0.4  # what the original service said
    for route in ("/customers/stats", LEGACY_ALL_PATH, "/customers/{customer_id}/stats"):
        text = spec["paths"][route]["get"]["description"]
        assert "sorted(x)[n // 2]" in text and "0.3" in text and "0.4" in text
    assert "alias of /customers/stats" in spec["paths"][LEGACY_ALL_PATH]["get"]["summary"]
