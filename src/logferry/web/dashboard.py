"""The dashboard pages: overview, error queue (with drain, retry and purge), customer SLIs.

Pages are Jinja2 templates rendered on the server with autoescaping, so keys, errors and
customer ids from outside are always text. Actions are POSTs that carry the dashboard token
in the form body (or the ``X-Logferry-Token`` header), never in a cookie, so another site
cannot make a browser send them (CSRF); the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from logferry.config import ShipOptions
from logferry.errors import LogferryError
from logferry.stats.queries import (
    CustomerStats,
    StatsStore,
    StoreUnavailableError,
    UnknownCustomerError,
)
from logferry.web.docs import STATIC_URL
from logferry.web.ledgerview import LedgerUnavailableError, LedgerView, QueueItem, Sampler, utc

#: The header that may carry the token instead of the form field (for scripts).
TOKEN_HEADER = "X-Logferry-Token"
PREFIX = "/dashboard"
_ID = re.compile(r"D?[0-9]{1,18}")
_MAX_FORM_BYTES = 64 * 1024
_KINDS = {"object": "failed object", "dead_letter": "dead letter"}
# Pages load scripts, styles and images from this server only: nothing from a CDN, and an
# injected inline script would not run even if escaping ever failed.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """How ``logferry serve`` runs the dashboard."""

    #: The ledger to show (None: ``LOGFERRY_LEDGER`` or the default path).
    ledger_url: str | None
    #: Actions (drain, retry, purge) need this token.
    token: str
    #: The sink the drain form proposes.
    drain_to: str | None = None
    #: Seconds between throughput samples, and how long they are kept.
    sample_seconds: float = 5.0
    window_seconds: float = 900.0
    #: A drain gives up on a sink that keeps failing after this many seconds.
    drain_timeout: float = 30.0


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: "-" if v is None else f"{v:,}"
    env.filters["pct"] = lambda v: "-" if v is None else f"{v:.3f}"
    env.filters["ms"] = lambda v: "-" if v is None else f"{v * 1000:.1f}"
    env.filters["utc"] = utc
    env.filters["age"] = _age
    env.filters["human_bytes"] = _human_bytes
    env.globals["kinds"] = _KINDS
    return env


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at GB


def authorized(expected: str, given: str | None) -> bool:
    """Whether ``given`` is the dashboard token (constant-time comparison)."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body, bounded in size (no multipart: nothing is uploaded)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in parsed.items()}


def _default_range(from_date: str | None, to_date: str | None) -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return (
        from_date or (today - timedelta(days=6)).isoformat(),
        to_date or today.isoformat(),
    )


def _sort_customers(customers: list[CustomerStats], by: str) -> list[CustomerStats]:
    """Worst first: lowest uptime, or highest p99; customers without requests last."""
    if by == "p99":
        return sorted(customers, key=lambda c: (c.total.p99_latency is None,
                                                -(c.total.p99_latency or 0.0), c.customer_id))  # fmt: skip
    return sorted(customers, key=lambda c: (c.total.uptime_percent is None,
                                            c.total.uptime_percent or 0.0, c.customer_id))  # fmt: skip


def _customer_charts(stats: CustomerStats) -> list[dict[str, Any]]:
    labels = [d.date.isoformat() for d in stats.days]
    return [
        {
            "canvas": "chart-requests",
            "type": "bar",
            "stacked": True,
            "labels": labels,
            "y": "requests",
            "datasets": [
                {"label": "ok", "data": [d.successful_requests for d in stats.days]},
                {"label": "failed", "data": [d.failed_requests for d in stats.days]},
            ],
        },
        {
            "canvas": "chart-uptime",
            "type": "line",
            "labels": labels,
            "y": "uptime %",
            "ymax": 100,
            "datasets": [{"label": "uptime %", "data": [d.uptime_percent for d in stats.days]}],
        },
        {
            "canvas": "chart-latency",
            "type": "line",
            "labels": labels,
            "y": "milliseconds",
            "datasets": [
                {"label": "median", "data": [_ms(d.median_latency) for d in stats.days]},
                {"label": "p99", "data": [_ms(d.p99_latency) for d in stats.days]},
            ],
        },
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def mount_dashboard(app: FastAPI, store: StatsStore, settings: DashboardSettings) -> None:
    """Add the dashboard under ``/dashboard`` (and ``/`` pointing to it) to ``app``."""
    view = LedgerView(settings.ledger_url)
    sampler = Sampler(view, settings.sample_seconds, settings.window_seconds)
    env = _templates()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(sampler.start)
        yield
        await run_in_threadpool(sampler.stop)
        view.close()

    router = APIRouter(lifespan=lifespan, include_in_schema=False)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        html = env.get_template(template).render(
            root=root,
            base=root + PREFIX,
            static=root + STATIC_URL,
            ledger=view.display,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def problem(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return page(request, "message.html", status, title=title, message=message, nav="")

    @router.get("/")
    def root(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + PREFIX + "/", 307)

    @router.get(PREFIX)
    def no_slash(request: Request) -> RedirectResponse:
        return RedirectResponse(request.scope.get("root_path", "") + PREFIX + "/", 307)

    @router.get(PREFIX + "/")
    def overview(request: Request) -> HTMLResponse:
        try:
            sources = view.sources()
        except LedgerUnavailableError as exc:
            return problem(request, 503, "Ledger unavailable", str(exc))
        times, series = sampler.rates()
        latest = {s: values[-1] for s, values in series.items() if values}
        chart = {
            "canvas": "chart-throughput",
            "type": "line",
            "labels": [datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S") for t in times],
            "y": "lines per second",
            "datasets": [{"label": s, "data": v} for s, v in sorted(series.items())],
        }
        recent = [
            (datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S"),
             [series[s.source][i] if s.source in series else 0.0 for s in sources])
            for i, t in enumerate(times)
        ][-12:]  # fmt: skip
        return page(
            request,
            "overview.html",
            nav="overview",
            sources=sources,
            latest=latest,
            charts=[chart] if times else [],
            recent=recent,
            sample_seconds=settings.sample_seconds,
            window_minutes=round(settings.window_seconds / 60),
            refresh=max(10, round(settings.sample_seconds * 2)),
        )

    @router.get(PREFIX + "/errors")
    def errors(
        request: Request,
        source: str = "",
        kind: str = "",
        error_class: str = "",
    ) -> HTMLResponse:
        try:
            queue = view.queue()
        except LedgerUnavailableError as exc:
            return problem(request, 503, "Ledger unavailable", str(exc))
        shown = [
            i
            for i in queue
            if (not source or i.source == source)
            and (not kind or i.kind == kind)
            and (not error_class or i.error_class == error_class)
        ]
        return page(
            request,
            "errors.html",
            nav="errors",
            items=shown[:500],
            total=len(queue),
            matching=len(shown),
            sources=sorted({i.source for i in queue}),
            classes=sorted({i.error_class for i in queue}),
            picked={"source": source, "kind": kind, "error_class": error_class},
        )

    def find(request: Request, entry_id: str) -> QueueItem | HTMLResponse:
        if not _ID.fullmatch(entry_id):
            return problem(request, 404, "Not in the error queue", f"no entry {entry_id!r}")
        try:
            item = view.item(entry_id)
        except LedgerUnavailableError as exc:
            return problem(request, 503, "Ledger unavailable", str(exc))
        if item is None:
            return problem(request, 404, "Not in the error queue",
                           f"no entry {entry_id} in the error queue (drained or purged?)")  # fmt: skip
        return item

    @router.get(PREFIX + "/errors/{entry_id}")
    def error(request: Request, entry_id: str) -> HTMLResponse:
        item = find(request, entry_id)
        if isinstance(item, HTMLResponse):
            return item
        return page(request, "error.html", nav="errors", item=item,
                    drain_to=settings.drain_to or "")  # fmt: skip

    def drain(item: QueueItem, form: dict[str, str]) -> tuple[bool, str, list[str]]:
        from logferry import api

        to = form.get("to", "").strip() or settings.drain_to
        if not to:
            return False, "Give the sink to drain into (a sink URL, as for --to).", []
        options = ShipOptions(retry_timeout=settings.drain_timeout)
        with view.writing() as led:
            result = api.drain(to, ledger=led, ids=[item.id], options=options)
        if result.partitions:
            return False, (
                "A failed stream partition is taken again by the next run of its source, "
                "not by drain."
            ), []  # fmt: skip
        if result.failed:
            return False, f"{item.id} still fails; it stays in the queue.", [
                str(f.get("error", "")) for f in result.failed
            ]  # fmt: skip
        return True, f"Drained {item.id}: {result.lines:,} lines delivered; it left the queue.", []

    def retry(item: QueueItem, _form: dict[str, str]) -> tuple[bool, str, list[str]]:
        if item.kind != "object":
            return False, (
                "A dead letter cannot be read from its source again: drain it, or purge it."
            ), []  # fmt: skip
        with view.writing() as led:
            n = led.purge_failed([int(item.id)])
        return bool(n), (
            f"Forgot the failure of {item.id}: the next catch-up (logferry run or ship) of its "
            "source ships the object again from its start."
        ), []  # fmt: skip

    def purge(item: QueueItem, _form: dict[str, str]) -> tuple[bool, str, list[str]]:
        with view.writing() as led:
            if item.kind == "object":
                n = led.purge_failed([int(item.id)])
                note = "the next catch-up of its source ships the object again if it is still there"
            else:
                n = led.remove_dead_letters([int(item.id[1:])])
                note = "its records are deleted for good"
        return bool(n), f"Purged {item.id}: {note}.", []

    actions: dict[str, Callable[[QueueItem, dict[str, str]], tuple[bool, str, list[str]]]] = {
        "drain": drain,
        "retry": retry,
        "purge": purge,
    }

    @router.post(PREFIX + "/errors/{entry_id}/{action}")
    async def act(request: Request, entry_id: str, action: str) -> HTMLResponse:
        form = await _form(request)
        given = request.headers.get(TOKEN_HEADER) or form.get("token")
        if not authorized(settings.token, given):
            return problem(request, 403, "Refused",
                           "This action needs the dashboard token (printed by logferry serve "
                           "at start, or set with --token / LOGFERRY_DASHBOARD_TOKEN).")  # fmt: skip
        run = actions.get(action)
        if run is None:
            return problem(request, 404, "No such action", f"unknown action {action!r}")
        item = await run_in_threadpool(find, request, entry_id)
        if isinstance(item, HTMLResponse):
            return item
        try:
            ok, message, reasons = await run_in_threadpool(run, item, form)
        except LogferryError as exc:
            ok, message, reasons = False, f"{action} {item.id} failed: {exc}", []
        return page(request, "result.html", 200 if ok else 409, nav="errors", ok=ok,
                    action=action, item=item, message=message, reasons=reasons)  # fmt: skip

    def stats_or_problem(request: Request, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except HTTPException as exc:
            return problem(request, exc.status_code, "Bad request", str(exc.detail))
        except UnknownCustomerError as exc:
            return problem(request, 404, "Unknown customer", str(exc))
        except StoreUnavailableError as exc:
            return problem(request, 503, "Store unavailable", str(exc))

    @router.get(PREFIX + "/customers")
    def customers(
        request: Request,
        from_date: str | None = None,
        to_date: str | None = None,
        sort: str = Query("uptime", pattern="^(uptime|p99)$"),
    ) -> HTMLResponse:
        from logferry.stats.app import date_range

        start_text, end_text = _default_range(from_date, to_date)

        def query() -> Any:
            start, end = date_range(start_text, end_text)
            return store.all_stats(start, end)

        found = stats_or_problem(request, query)
        if isinstance(found, HTMLResponse):
            return found
        ranked = _sort_customers(found.customers, sort)
        worst = ranked[:15]
        metric = "p99" if sort == "p99" else "uptime"
        chart = {
            "canvas": "chart-worst",
            "type": "bar",
            "horizontal": True,
            "labels": [c.customer_id for c in worst],
            "y": "p99 latency, ms" if metric == "p99" else "uptime %",
            "ymax": None if metric == "p99" else 100,
            "datasets": [{
                "label": "p99 ms" if metric == "p99" else "uptime %",
                "data": [_ms(c.total.p99_latency) if metric == "p99" else c.total.uptime_percent
                         for c in worst],
            }],
        }  # fmt: skip
        return page(request, "customers.html", nav="customers", customers=ranked, sort=sort,
                    from_date=start_text, to_date=end_text,
                    charts=[chart] if worst else [])  # fmt: skip

    @router.get(PREFIX + "/customer")
    def customer(
        request: Request,
        customer_id: str = "",
        from_date: str | None = None,
        to_date: str | None = None,
    ) -> HTMLResponse:
        from logferry.stats.app import date_range

        start_text, end_text = _default_range(from_date, to_date)
        if not customer_id:
            return page(request, "customer.html", nav="customers", stats=None, customer_id="",
                        from_date=start_text, to_date=end_text, charts=[])  # fmt: skip

        def query() -> Any:
            start, end = date_range(start_text, end_text)
            return store.customer_stats(customer_id, start, end)

        found = stats_or_problem(request, query)
        if isinstance(found, HTMLResponse):
            return found
        return page(request, "customer.html", nav="customers", stats=found,
                    customer_id=customer_id, from_date=start_text, to_date=end_text,
                    charts=_customer_charts(found) if found.days else [])  # fmt: skip

    app.include_router(router)
