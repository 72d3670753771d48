"""The stats API: per-customer daily request statistics over HTTP (FastAPI, OpenAPI at /docs)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Query

from logferry.stats.queries import (
    AllCustomersStats,
    CustomerStats,
    StoreUnavailableError,
    UnknownCustomerError,
    open_stats_store,
)

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


def create_app(store_url: str) -> FastAPI:
    """The API over the store at ``store_url`` (``duckdb:///…`` or ``influxdb+http://…``)."""
    store = open_stats_store(store_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="logferry stats",
        summary="Per-customer request statistics (SLIs), computed by the store.",
        lifespan=lifespan,
    )

    # Plain `def` endpoints: FastAPI runs them in its thread pool, so a slow query
    # never blocks the event loop.
    @app.get("/customers/stats", response_model=AllCustomersStats)
    def all_customers(
        from_date: FromDate, to_date: ToDate = None, exact: Exact = False
    ) -> AllCustomersStats:
        """Daily and total stats of every customer with requests in the range."""
        start, end = date_range(from_date, to_date)
        try:
            return store.all_stats(start, end, exact=exact)
        except StoreUnavailableError as exc:
            raise HTTPException(503, str(exc)) from None

    @app.get(
        "/customers/{customer_id}/stats",
        response_model=CustomerStats,
        responses={404: {"description": "No request of this customer in the store"}},
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
