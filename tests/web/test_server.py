"""The dashboard over HTTP, without a browser: token checks, escaping, headers, local assets,
and ``logferry serve``'s refusal to listen on the network without a token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from logferry.cli.serve import is_loopback
from logferry.stats.app import create_app
from logferry.web import DashboardSettings
from logferry.web.dashboard import TOKEN_HEADER, authorized
from tests.conftest import run_cli
from tests.web.conftest import HOSTILE_CUSTOMER, HOSTILE_KEY, TOKEN, Filled, Server

STATIC = Path(__file__).resolve().parents[2] / "src" / "logferry" / "web" / "static"


def _queue_ids(client: httpx.Client | TestClient) -> list[str]:
    html = client.get("/dashboard/errors").text
    return re.findall(r'<tr data-id="([^"]+)">', html)


@pytest.fixture()
def client(filled: Filled) -> TestClient:
    settings = DashboardSettings(filled.ledger, TOKEN, f"file://{filled.drained}", 60.0)
    return TestClient(create_app(filled.store, settings))


def test_docs_use_the_packaged_swagger_ui(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "cdn." not in html and "https://" not in html
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in srcs
    for url in srcs:
        got = client.get(url)
        assert got.status_code == 200, url
    assert client.get("/redoc").status_code == 404  # no ReDoc: it would load from a CDN
    assert client.get("/openapi.json").json()["paths"]  # the API itself is unchanged


def test_vendored_libraries_keep_their_licences() -> None:
    vendor = STATIC / "vendor"
    assert "Copyright" in (vendor / "chart.js" / "LICENSE.md").read_text()
    assert "Apache License" in (vendor / "swagger-ui" / "LICENSE").read_text()
    assert (vendor / "chart.js" / "chart.umd.min.js").read_text().startswith("/*!\n * Chart.js v4")


def test_pages_answer_with_no_outside_url_and_a_strict_policy(client: TestClient) -> None:
    for path in ("/dashboard/", "/dashboard/errors", "/dashboard/customers", "/dashboard/customer"):
        got = client.get(path)
        assert got.status_code == 200, path
        assert "script-src 'self'" in got.headers["content-security-policy"]
        assert not re.search(r'(?:src|href)="(?:https?:)?//', got.text), path
    assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard/"


def test_package_data_covers_every_web_file() -> None:
    import tomllib

    repo = STATIC.parents[3]
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["logferry.web"]
    web = STATIC.parent
    files = {p for p in web.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    covered = {p for pattern in patterns for p in web.glob(pattern) if p.is_file()}
    assert files - covered == set()


def test_bad_input_gets_a_page_not_a_traceback(client: TestClient) -> None:
    got = client.get("/dashboard/customer", params={"customer_id": "nobody"})
    assert got.status_code == 404 and "no requests of customer" in got.text
    got = client.get("/dashboard/customers", params={"from_date": "2020-13-01"})
    assert got.status_code == 422 and "not a valid date" in got.text
    got = client.get("/dashboard/customers", params={"from_date": "2999-01-01"})
    assert got.status_code == 422 and "future" in got.text
    assert client.get("/dashboard/customers", params={"sort": "x"}).status_code == 422


def test_text_from_outside_is_escaped(client: TestClient) -> None:
    queue = client.get("/dashboard/errors").text
    assert HOSTILE_KEY not in queue
    assert "broken&lt;img src=x onerror=alert(1)&gt;.log.gz" in queue
    customers = client.get("/dashboard/customers").text
    assert HOSTILE_CUSTOMER not in customers
    assert "cust_&lt;svg/onload=alert(1)&gt;" in customers
    page = client.get("/dashboard/customer", params={"customer_id": HOSTILE_CUSTOMER}).text
    assert HOSTILE_CUSTOMER not in page
    # In the chart data too: JSON in a script element with <, > and & escaped.
    charts = customers.split('id="charts">')[1].split("</script>")[0]
    assert "cust_\\u003csvg/onload=alert(1)\\u003e" in charts


def test_actions_need_the_token(client: TestClient) -> None:
    ids = _queue_ids(client)
    letter = next(i for i in ids if i.startswith("D"))
    for body, headers in (
        ({}, {}),
        ({"token": ""}, {}),
        ({"token": TOKEN[:-1]}, {}),
        ({"token": TOKEN + "x"}, {}),
        ({}, {"Cookie": f"token={TOKEN}"}),  # a cookie alone is not the token
    ):
        for action in ("drain", "retry", "purge"):
            refused = client.post(
                f"/dashboard/errors/{letter}/{action}", data=body, headers=headers
            )
            assert refused.status_code == 403, (action, body, headers)
    assert _queue_ids(client) == ids  # nothing changed
    assert authorized(TOKEN, TOKEN) and not authorized(TOKEN, None) and not authorized("", "")


def test_retry_and_purge(client: TestClient) -> None:
    ids = _queue_ids(client)
    obj = next(i for i in ids if not i.startswith("D"))
    detail = client.get(f"/dashboard/errors/{obj}").text
    assert "Retry on the next run" in detail
    wrong = client.post(f"/dashboard/errors/{obj}/nothing", data={"token": TOKEN})
    assert wrong.status_code == 404
    assert client.get("/dashboard/errors/12abc").status_code == 404
    # Retrying a dead letter is refused (it cannot be read again), without changing anything.
    letter = next(i for i in ids if i.startswith("D"))
    no = client.post(f"/dashboard/errors/{letter}/retry", headers={TOKEN_HEADER: TOKEN})
    assert no.status_code == 409
    assert _queue_ids(client) == ids

    # Draining the broken object reads it again: it fails again, says why, and stays.
    again = client.post(f"/dashboard/errors/{obj}/drain", data={"token": TOKEN})
    assert again.status_code == 409
    assert "still fails" in again.text and "gzip" in again.text
    assert sorted(_queue_ids(client)) == sorted(ids)  # newest first: the object moved up
    # Retry forgets the failure (the next catch-up takes the object); purge deletes a letter.
    done = client.post(f"/dashboard/errors/{obj}/retry", data={"token": TOKEN})
    assert done.status_code == 200 and "next catch-up" in done.text
    gone = client.post(f"/dashboard/errors/{letter}/purge", headers={TOKEN_HEADER: TOKEN})
    assert gone.status_code == 200 and "deleted for good" in gone.text
    assert sorted(_queue_ids(client)) == sorted(i for i in ids if i not in (obj, letter))
    assert client.get(f"/dashboard/errors/{letter}").status_code == 404


def test_refuses_a_network_address_without_a_token(filled: Filled) -> None:
    env = {"LOGFERRY_DASHBOARD_TOKEN": ""}
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not any(map(is_loopback, ("0.0.0.0", "::", "192.0.2.1", "example.com")))
    for host in ("0.0.0.0", "example.com"):
        p = run_cli("serve", "--store", filled.store, "--host", host, env=env)
        assert p.returncode == 2, (host, p.stderr)
        assert "without a token" in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_serve_prints_a_token_it_made_and_not_one_it_was_given(
    server: Server, filled: Filled
) -> None:
    # The session server got its token from LOGFERRY_DASHBOARD_TOKEN: it is not printed.
    log = (server.filled.root / "serve.log").read_text()
    assert TOKEN not in log
    assert "/dashboard/" in log
    env = {**os.environ, "PYTHONPATH": str(STATIC.parents[2]), "LOGFERRY_DASHBOARD_TOKEN": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "logferry", "serve", "--store", filled.store, "--port", "0"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        lines = [process.stderr.readline() for _ in range(2)]
    finally:
        process.terminate()
        process.wait(10)
    assert lines[0].startswith("serving on http://127.0.0.1:"), lines
    assert lines[1].startswith("dashboard action token: "), lines
    assert len(lines[1].split(": ")[1].strip()) >= 32
