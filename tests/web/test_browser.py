"""The dashboard in a real browser (Playwright driving Debian's chromium) over a store and a
ledger filled by real runs: every page loads with nothing from outside, shows the API's
numbers, draws its charts with a table beside them, fits a 390 px phone, and drains an entry
from the error queue with the token.

Screenshots go to ``$LOGFERRY_SCREENSHOTS`` (``docs/img`` to refresh the docs' images), else
to the test's temporary directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

import logferry
from logferry.ledger import open_ledger
from tests.helpers import wait_for
from tests.web.browser import CHROMIUM_ARGS, ensure_chromium
from tests.web.conftest import HOSTILE_KEY, TOKEN, Server

WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = ensure_chromium()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(server: Server) -> Path:
    where = Path(os.environ.get("LOGFERRY_SCREENSHOTS") or server.filled.root / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


class Watched:
    """A page that fails the test on a script error, a console error or a request to
    anywhere but the server (each would be a blank chart or a CDN at run time)."""

    def __init__(self, browser: Browser, server: Server, viewport: dict[str, int]) -> None:
        self.server = server
        self.context = browser.new_context(viewport=viewport)  # type: ignore[arg-type]
        self.problems: list[str] = []
        self.context.route("**/*", self._only_local)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        self.page.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )

    def _only_local(self, route: Route) -> None:
        if route.request.url.startswith(self.server.url):
            route.continue_()
        else:
            self.problems.append(f"request to outside: {route.request.url}")
            route.abort()

    def open(self, path: str) -> Page:
        response = self.page.goto(self.server.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        self.page.wait_for_load_state("load")
        return self.page

    def check(self) -> None:
        assert self.problems == []
        assert self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
            "the page is wider than the viewport"
        )

    def close(self) -> None:
        self.context.close()


def _cells(page: Page, row: str) -> dict[str, str]:
    return page.eval_on_selector_all(
        f"{row} td[data-field]",
        "tds => Object.fromEntries(tds.map(td => [td.dataset.field, td.dataset.value ?? td.textContent.trim()]))",
    )


def _same(shown: str, value: Any) -> bool:
    if value is None:
        return shown == "None"
    return float(shown) == float(value)


def _chart_drawn(page: Page, canvas: str) -> bool:
    return bool(page.evaluate(f"!!window.Chart && !!Chart.getChart('{canvas}')"))


def test_overview(browser: Browser, server: Server, shots: Path) -> None:
    # A run while the dashboard watches: its lines show up in the throughput chart.
    more = server.filled.root / "more"
    more.mkdir()
    (more / "app.log").write_text("".join(f"line {i}\n" for i in range(3000)))
    logferry.ship(str(more), f"file://{server.filled.root / 'out'}", ledger=server.filled.ledger)
    w = Watched(browser, server, WIDE)
    try:
        page = w.open("/dashboard/")
        led = open_ledger(server.filled.ledger, create=False, readonly=True)
        try:
            statuses = {s.source: s for s in led.status()}
        finally:
            led.close()
        for source, s in statuses.items():
            cells = _cells(page, f'tr[data-source="{source}"]')
            assert cells["done"] == f"{s.done:,}"
            assert cells["failed"] == f"{s.failed:,}"
            assert cells["lines"] == f"{s.lines:,}"
            assert int(cells["bytes"]) == s.bytes
        assert len(statuses) == 3

        def sampled() -> float:
            # The chart keeps the whole window (the table only the latest samples).
            page.reload()
            return float(page.evaluate(
                """source => { const c = window.Chart && Chart.getChart('chart-throughput');
                   const d = c && c.data.datasets.find(d => d.label === source);
                   return d ? Math.max(...d.data) : 0; }""",
                f"file://{more}",
            ))  # fmt: skip

        peak = wait_for(sampled, timeout=10, interval=0.5, message="no throughput of the run")
        assert peak > 0
        assert page.get_attribute("#chart-throughput", "role") == "img"
        page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)
        w.check()
    finally:
        w.close()


def test_error_queue_filters_and_drain(browser: Browser, server: Server, shots: Path) -> None:
    w = Watched(browser, server, WIDE)
    try:
        page = w.open("/dashboard/errors")
        ids = page.eval_on_selector_all("#queue tbody tr", "rs => rs.map(r => r.dataset.id)")
        letters = [i for i in ids if i.startswith("D")]
        assert len(letters) == 2 and len(ids) == 3
        assert page.locator("#queue").get_by_text(HOSTILE_KEY).count() == 1  # as text
        page.screenshot(path=str(shots / "dashboard-errors.png"), full_page=True)

        page.select_option("select[name=kind]", "dead_letter")
        with page.expect_navigation():  # the filtered page, not the one before it
            page.click("form.filters button")
        shown = page.eval_on_selector_all("#queue tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert shown == letters
        page.select_option("select[name=kind]", "")
        page.select_option("select[name=error_class]", index=1)
        with page.expect_navigation():
            page.click("form.filters button")
        classes = page.eval_on_selector_all(
            "#queue td[data-field=error_class]", "t => t.map(x => x.textContent)"
        )
        assert len(set(classes)) == 1

        # A POST without the token is refused, and the entry stays.
        victim = letters[-1]
        refused = page.request.post(f"{server.url}/dashboard/errors/{victim}/drain",
                                    form={"to": f"file://{server.filled.drained}"})  # fmt: skip
        assert refused.status == 403
        refused = page.request.post(f"{server.url}/dashboard/errors/{victim}/purge",
                                    form={"token": "guess"})  # fmt: skip
        assert refused.status == 403

        page = w.open(f"/dashboard/errors/{victim}")
        assert page.input_value("form[action$='/drain'] input[name=to]") == (
            f"file://{server.filled.drained}"
        )
        page.fill("form[action$='/drain'] input[name=token]", TOKEN)
        page.screenshot(path=str(shots / "dashboard-error-entry.png"), full_page=True)
        page.click("form[action$='/drain'] button")
        page.wait_for_load_state("load")
        assert "it left the queue" in page.inner_text("#result")
        page = w.open("/dashboard/errors")
        left = page.eval_on_selector_all("#queue tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert victim not in left and len(left) == 2
        drained = list(server.filled.drained.rglob("*"))
        assert any(p.is_file() for p in drained), drained
        # The tab remembers the token: the next form is filled in.
        page = w.open(f"/dashboard/errors/{letters[0]}")
        assert page.input_value("form[action$='/purge'] input[name=token]") == TOKEN
        w.check()
    finally:
        w.close()


def test_customer_slis_match_the_api(browser: Browser, server: Server, shots: Path) -> None:
    api = httpx.Client(base_url=server.url)
    w = Watched(browser, server, WIDE)
    try:
        page = w.open("/dashboard/customers")
        first, last = (
            page.input_value("input[name=from_date]"),
            page.input_value("input[name=to_date]"),
        )
        every = api.get("/customers/stats", params={"from_date": first, "to_date": last}).json()
        by_id = {c["customer_id"]: c for c in every["customers"]}
        rows = page.eval_on_selector_all(
            "#customers tbody tr", "rs => rs.map(r => r.dataset.customer)"
        )
        assert sorted(rows) == sorted(by_id)
        uptimes = [by_id[c]["total"]["uptime_percent"] for c in rows]
        assert uptimes == sorted(uptimes)  # worst first
        for c in rows:
            cells = _cells(page, f'#customers tr[data-customer="{c}"]')
            for field, shown in cells.items():
                assert _same(shown, by_id[c]["total"][field]), (c, field)
        assert _chart_drawn(page, "chart-worst")
        page.screenshot(path=str(shots / "dashboard-customers.png"), full_page=True)

        page.select_option("select[name=sort]", "p99")
        with page.expect_navigation():  # the filtered page, not the one before it
            page.click("form.filters button")
        rows = page.eval_on_selector_all(
            "#customers tbody tr", "rs => rs.map(r => r.dataset.customer)"
        )
        p99s = [by_id[c]["total"]["p99_latency"] for c in rows]
        assert p99s == sorted(p99s, reverse=True)
        w.check()

        customer = "cust_1"
        page = w.open(
            f"/dashboard/customer?customer_id={customer}&from_date={first}&to_date={last}"
        )
        want = api.get(
            f"/customers/{customer}/stats", params={"from_date": first, "to_date": last}
        ).json()
        days = page.eval_on_selector_all("#days tbody tr", "rs => rs.map(r => r.dataset.day)")
        assert days == [d["date"] for d in want["days"]] and len(days) >= 3
        for day in [*want["days"], {**want["total"], "date": "total"}]:
            cells = _cells(page, f'#days tr[data-day="{day["date"]}"]')
            assert set(cells) == {"total_requests", "successful_requests", "failed_requests",
                                  "uptime_percent", "avg_latency", "median_latency", "p99_latency"}  # fmt: skip
            for field, shown in cells.items():
                assert _same(shown, day[field]), (day["date"], field)
        for canvas in ("chart-requests", "chart-uptime", "chart-latency"):
            assert _chart_drawn(page, canvas), canvas
            # The text alternative: the table with the same numbers.
            assert page.get_attribute(f"#{canvas}", "aria-describedby") == "days-caption"
        page.screenshot(path=str(shots / "dashboard-customer.png"), full_page=True)
        w.check()
    finally:
        w.close()


def test_phone_width_and_offline_docs(browser: Browser, server: Server, shots: Path) -> None:
    w = Watched(browser, server, PHONE)
    try:
        html = httpx.get(server.url + "/dashboard/errors").text
        entry = re.findall(r'<tr data-id="([^"]+)">', html)[0]
        for path in ("/dashboard/", "/dashboard/errors", f"/dashboard/errors/{entry}",
                     "/dashboard/customers", "/dashboard/customer?customer_id=cust_2"):  # fmt: skip
            w.open(path)
            w.check()
        page = w.open("/dashboard/customer?customer_id=cust_2")
        page.screenshot(path=str(shots / "dashboard-customer-phone.png"), full_page=True)
        page = w.open("/dashboard/errors")
        page.screenshot(path=str(shots / "dashboard-errors-phone.png"), full_page=True)
        # Swagger UI comes from the package: it renders with every outside request refused.
        page = w.open("/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        assert "logferry stats" in page.inner_text(".swagger-ui .info .title")
        assert not [p for p in w.problems if "outside" in p]
    finally:
        w.close()


def test_entries_page_link_targets_exist(server: Server) -> None:
    html = httpx.get(server.url + "/dashboard/errors").text
    for href in set(re.findall(r'href="(/dashboard/errors/[^"]+)"', html)):
        assert httpx.get(server.url + href).status_code == 200, href
