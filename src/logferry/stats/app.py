"""The stats API: per-customer daily request statistics over HTTP (FastAPI, OpenAPI at /docs)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

from logferry.extras import missing_extra

try:
    from fastapi import FastAPI, HTTPException, Path, Query
except ImportError as exc:
    raise missing_extra("stats", "fastapi", exc) from None

from logferry.stats.queries import (
    AllCustomersStats,
    CustomerStats,
    StoreUnavailableError,
    UnknownCustomerError,
    open_stats_store,
)

if TYPE_CHECKING:
    from logferry.web import DashboardSettings

_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_DATE_DOC = "UTC day, YYYY-MM-DD; not in the future"
# Module level: FastAPI resolves the (string) annotations of endpoints in this namespace.
FromDate = Annotated[str, Query(description=_DATE_DOC, examples=["2026-11-01"])]
ToDate = Annotated[str | None, Query(description=_DATE_DOC + "; inclusive; default today")]
CustomerId = Annotated[str, Path(description="Customer id as in the log")]
Exact = Annotated[
    bool,
    Query(
        description="exact median and p99 from the rows (slower) instead of the daily "
        "DDSketch rollups (within 1 %); the response's latency_method says which was used"
    ),
]


def _parse_date(name: str, value: str) -> date:
    if not _DATE.fullmatch(value):
        raise HTTPException(422, f"{name} must be a date as YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(422, f"{name} is not a valid date: {value!r}") from None


def date_range(from_date: str, to_date: str | None) -> tuple[date, date]:
    """Validate the query's dates: well formed, not in the future, ``from`` ≤ ``to``."""
    today = datetime.now(UTC).date()
    start = _parse_date("from_date", from_date)
    end = today if to_date is None else _parse_date("to_date", to_date)
    if start > today or end > today:
        raise HTTPException(422, f"dates must not be in the future (today is {today} UTC)")
    if start > end:
        raise HTTPException(422, "from_date must not be after to_date")
    return start, end


MEDIAN_NOTE = """
**Median.** `median_latency` is the standard median: the middle duration for an odd count,
the mean of the two middle ones for an even count, as InfluxDB's `MEDIAN()` computes it.
The original stats service answered the upper middle value (`sorted(x)[n // 2]`) instead,
so for an even count the two can differ. Example, durations 0.1, 0.2, 0.4 and 0.8 s:
here `median_latency` is 0.3, the original service said 0.4. For an odd count, such as
0.1, 0.2 and 0.4 s, both say 0.2.
"""

#: The path the original stats service answered all customers at.
LEGACY_ALL_PATH = "/customers/customer/stats/all"


def create_app(store_url: str, dashboard: DashboardSettings | None = None) -> FastAPI:
    """The API over the store at ``store_url`` (``duckdb:///…`` or ``influxdb+http://…``);
    with ``dashboard``, the web dashboard under ``/dashboard`` too."""
    from logferry.web import mount_dashboard, mount_docs

    store = open_stats_store(store_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="logferry stats",
        summary="Per-customer request statistics (SLIs), computed by the store.",
        lifespan=lifespan,
        docs_url=None,  # mount_docs serves Swagger UI from the package, not a CDN
        redoc_url=None,
    )
    mount_docs(app)
    if dashboard is not None:
        mount_dashboard(app, store, dashboard)

    # Plain `def` endpoints: FastAPI runs them in its thread pool, so a slow query
    # never blocks the event loop.
    @app.get(
        "/customers/stats",
        response_model=AllCustomersStats,
        description="Daily and total stats of every customer with requests in the range.\n"
        + MEDIAN_NOTE,
    )
    def all_customers(
        from_date: FromDate, to_date: ToDate = None, exact: Exact = False
    ) -> AllCustomersStats:
        """Daily and total stats of every customer with requests in the range."""
        start, end = date_range(from_date, to_date)
        try:
            return store.all_stats(start, end, exact=exact)
        except StoreUnavailableError as exc:
            raise HTTPException(503, str(exc)) from None

    # Clients of the original stats service keep their URL: same query, same answer.
    app.get(
        LEGACY_ALL_PATH,
        response_model=AllCustomersStats,
        summary="All customers (alias of /customers/stats)",
        description="The original stats service's path for all customers: the same query "
        "parameters and the same answer as `GET /customers/stats`.\n" + MEDIAN_NOTE,
        operation_id="all_customers_legacy_alias",
    )(all_customers)

    @app.get(
        "/customers/{customer_id}/stats",
        response_model=CustomerStats,
        responses={404: {"description": "No request of this customer in the store"}},
        description="Daily and total stats of one customer: counts, uptime %, "
        "average/median/p99 latency.\n" + MEDIAN_NOTE,
    )
    def customer(
        customer_id: CustomerId,
        from_date: FromDate,
        to_date: ToDate = None,
        exact: Exact = False,
    ) -> CustomerStats:
        """Daily and total stats of one customer: counts, uptime %, average/median/p99 latency."""
        start, end = date_range(from_date, to_date)
        try:
            return store.customer_stats(customer_id, start, end, exact=exact)
        except UnknownCustomerError as exc:
            raise HTTPException(404, str(exc)) from None
        except StoreUnavailableError as exc:
            raise HTTPException(503, str(exc)) from None

    return app
