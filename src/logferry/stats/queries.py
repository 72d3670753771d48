"""Stats queries: one small interface, a DuckDB and an InfluxDB backend.

Every number is computed by the database; Python only reshapes the aggregated rows.
Days are UTC calendar days; ``to_date`` is inclusive. Definitions (``n`` requests in a group,
durations sorted ascending ``x[1] ≤ … ≤ x[n]``):

- ``total_requests`` = n; ``successful_requests`` = requests with 200 ≤ status < 400;
  ``failed_requests`` = the rest; ``uptime_percent`` = successful / n × 100.
- ``avg_latency`` = arithmetic mean of the durations (seconds).
- ``median_latency`` = ``x[(n+1)/2]`` for odd n, the mean of the two middle values for even n
  (DuckDB: the mean of ``quantile_disc`` at 0.5 and 0.5 + 1e-9, i.e. ``x[ceil(n/2)]`` and
  ``x[floor(n/2) + 1]``; InfluxQL ``MEDIAN`` is the same).
- ``p99_latency``, DuckDB: nearest rank, ``x[ceil(0.99·n)]`` (``quantile_disc(duration, 0.99)``,
  the SQL ``PERCENTILE_DISC``). InfluxDB: ``PERCENTILE(duration, 99)`` is ``x[floor(0.99·n + 0.5)]``
  (rank rounded half up, at least 1): one rank lower than DuckDB's when ``n mod 100`` is
  51–99, the same otherwise.

Latencies are ``None`` for a group without requests.

Fast path (DuckDB): the sink keeps daily per-customer rollups (:mod:`logferry.stats.rollups`),
folding new rows in about once a second; queries add the rows not folded yet. Counts, uptime
and average come out as from the exact query; median and p99 come from a DDSketch with 1 %
relative error, and every response says which in ``latency_method`` (``"exact"`` or
``"ddsketch-1%"``). ``exact=True`` (the API's ``?exact=true``) always scans ``records``; so
does a store whose rollups cannot be trusted (see :func:`logferry.stats.rollups.watermark`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, Field

from logferry.errors import ConfigError, LogferryError
from logferry.extras import require
from logferry.stats import rollups

_EPOCH = date(1970, 1, 1)

LatencyMethod = Literal["exact", "ddsketch-1%"]
_METHOD_DOC = (
    "how median and p99 were computed: exact order statistics, or read from daily DDSketch "
    "rollups within 1 % relative error of them (counts, uptime and average are exact either way)"
)


class UnknownCustomerError(LogferryError):
    """The store has no request at all for this customer."""


class StoreUnavailableError(LogferryError):
    """The store could not be queried (missing file, server down)."""


class Stats(BaseModel):
    """Counts and latencies (seconds) of one group of requests."""

    total_requests: int
    successful_requests: int
    failed_requests: int
    uptime_percent: float | None = Field(description="successful / total × 100")
    avg_latency: float | None = Field(description="mean duration, seconds")
    median_latency: float | None = Field(
        description="middle duration; mean of the two middle ones for an even count "
        "(0.1, 0.2, 0.4, 0.8 → 0.3; the original stats service's upper middle said 0.4)"
    )
    p99_latency: float | None = Field(
        description="99th percentile duration, nearest rank (see the docs for the exact rank)"
    )


class DayStats(Stats):
    """Stats of one UTC day."""

    date: date


class CustomerStats(BaseModel):
    """One customer's stats per UTC day (days without requests left out) and in total."""

    customer_id: str
    from_date: date
    to_date: date
    days: list[DayStats]
    total: Stats
    latency_method: LatencyMethod = Field(default="exact", description=_METHOD_DOC)


class AllCustomersStats(BaseModel):
    """Every customer with requests in the range."""

    from_date: date
    to_date: date
    customers: list[CustomerStats]
    latency_method: LatencyMethod = Field(default="exact", description=_METHOD_DOC)


def _stats(total: int, successful: int, avg: Any, median: Any, p99: Any) -> dict[str, Any]:
    return {
        "total_requests": total,
        "successful_requests": successful,
        "failed_requests": total - successful,
        "uptime_percent": successful / total * 100 if total else None,
        "avg_latency": None if avg is None else float(avg),
        "median_latency": None if median is None else float(median),
        "p99_latency": None if p99 is None else float(p99),
    }


def _empty(customer_id: str, start: date, end: date) -> CustomerStats:
    return CustomerStats(
        customer_id=customer_id,
        from_date=start,
        to_date=end,
        days=[],
        total=Stats(**_stats(0, 0, None, None, None)),
    )


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end+1 00:00)`` in UTC."""
    return (
        datetime.combine(start, time(), UTC),
        datetime.combine(end + timedelta(days=1), time(), UTC),
    )


class StatsStore(ABC):
    """Where the request records are; answers stats queries in the database."""

    @abstractmethod
    def customer_stats(
        self, customer_id: str, start: date, end: date, *, exact: bool = False
    ) -> CustomerStats:
        """Stats of one customer from ``start`` to ``end`` (inclusive, UTC days).

        ``exact`` asks for exact median and p99 even where the store keeps a faster sketch.
        Raises :class:`UnknownCustomerError` when the store has no request of the customer.
        """

    @abstractmethod
    def all_stats(self, start: date, end: date, *, exact: bool = False) -> AllCustomersStats:
        """Stats of every customer with requests from ``start`` to ``end`` (``exact`` as above)."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


# One pass: GROUPING SETS yields per-day rows and the per-customer total (day NULL) together.
# The UTC day is epoch microseconds // 1 day: several times faster than CAST(ts AS DATE),
# which goes through ICU's calendar for a TIMESTAMPTZ, and independent of the session zone.
# One sort per group serves all three order statistics: DuckDB's quantile_disc(x, q) is
# x[ceil(q·n)] (1-based), so q = 0.5 and 0.5 + 1e-9 give the two middle values (the same one
# when n is odd, for n < 5·10^8) and 0.99 the nearest-rank p99. Two separate quantile
# aggregates sorted twice and took 0.73 s instead of 0.48 s over 10 million rows.
_DUCKDB_STATS = """
SELECT customer_id, day, total, successful, average, (q[1] + q[2]) / 2, q[3]
FROM (
    SELECT customer_id, day,
           count(*) AS total,
           count(*) FILTER (WHERE success) AS successful,
           avg(duration) AS average,
           quantile_disc(duration, [0.5, 0.5 + 1e-9, 0.99]) AS q
    FROM (
        SELECT customer_id, epoch_us(ts) // 86400000000 AS day, success, duration
        FROM records
        WHERE ts >= $start AND ts < $end AND customer_id IS NOT NULL AND status_code IS NOT NULL
              {customer}
    )
    GROUP BY GROUPING SETS ((customer_id, day), (customer_id))
)
ORDER BY customer_id, day NULLS FIRST
"""
_DUCKDB_KNOWN = (
    "SELECT 1 FROM records WHERE customer_id = $customer AND status_code IS NOT NULL LIMIT 1"
)


class DuckDBStats(StatsStore):
    """Stats from the embedded store, opened read-only per query: rollups, else ``records``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _query(
        self, exact: bool, queries: dict[bool, tuple[str, dict[str, Any]]]
    ) -> tuple[list[tuple[Any, ...]], LatencyMethod]:
        """Run ``queries[True]`` (over rollups) when asked and usable, else ``queries[False]``."""
        require("stats", "duckdb")
        import duckdb

        from logferry.sinks.duckdb import open_store_readonly

        try:
            # Per query, closed at once: the ingesting writer needs the file lock back.
            con = open_store_readonly(self.path, timeout=2.0)
        except FileNotFoundError as exc:
            raise StoreUnavailableError(str(exc)) from None
        except duckdb.Error as exc:
            raise StoreUnavailableError(f"cannot open DuckDB store {self.path}: {exc}") from None
        try:
            # Read on this connection: what it reads is the snapshot the query sees.
            watermark = None if exact else rollups.watermark(con)
            fast = watermark is not None
            sql, params = queries[fast]
            if fast:
                # The rollups cover the rows below the watermark; the query adds the rest.
                params = {**params, "next": watermark}
            method: LatencyMethod = "ddsketch-1%" if fast else "exact"
            return con.execute(sql, params).fetchall(), method
        except duckdb.CatalogException as exc:
            raise StoreUnavailableError(f"{self.path} is not a logferry store: {exc}") from None
        finally:
            con.close()

    def _grouped(
        self, rows: list[tuple[Any, ...]], start: date, end: date, method: LatencyMethod
    ) -> list[CustomerStats]:
        out: list[CustomerStats] = []
        for customer_id, day, total, successful, avg, median, p99 in rows:
            stats = _stats(total, successful, avg, median, p99)
            if day is None:
                out.append(
                    CustomerStats(
                        customer_id=customer_id,
                        from_date=start,
                        to_date=end,
                        days=[],
                        total=Stats(**stats),
                        latency_method=method,
                    )
                )
            else:
                out[-1].days.append(DayStats(date=_EPOCH + timedelta(days=day), **stats))
        return out

    @staticmethod
    def _params(start: date, end: date) -> dict[bool, dict[str, Any]]:
        lo, hi = _bounds(start, end)
        return {
            False: {"start": lo, "end": hi},
            True: {"lo": (start - _EPOCH).days, "hi": (end - _EPOCH).days},
        }

    def customer_stats(
        self, customer_id: str, start: date, end: date, *, exact: bool = False
    ) -> CustomerStats:
        """Stats of one customer (see :class:`StatsStore`)."""
        params = self._params(start, end)
        where = "AND customer_id = $customer"
        rows, method = self._query(
            exact,
            {
                False: (
                    _DUCKDB_STATS.format(customer=where),
                    {**params[False], "customer": customer_id},
                ),
                True: (
                    rollups.STATS_SQL.format(customer=where),
                    {**params[True], "customer": customer_id},
                ),
            },
        )
        if rows:
            return self._grouped(rows, start, end, method)[0]
        known, _ = self._query(
            exact,
            {
                False: (_DUCKDB_KNOWN, {"customer": customer_id}),
                True: (rollups.KNOWN_SQL, {"customer": customer_id}),
            },
        )
        if not known:
            raise UnknownCustomerError(f"no requests of customer {customer_id!r}")
        return _empty(customer_id, start, end).model_copy(update={"latency_method": method})

    def all_stats(self, start: date, end: date, *, exact: bool = False) -> AllCustomersStats:
        """Stats of every customer (see :class:`StatsStore`)."""
        params = self._params(start, end)
        rows, method = self._query(
            exact,
            {
                False: (_DUCKDB_STATS.format(customer=""), params[False]),
                True: (rollups.STATS_SQL.format(customer=""), params[True]),
            },
        )
        return AllCustomersStats(
            from_date=start,
            to_date=end,
            customers=self._grouped(rows, start, end, method),
            latency_method=method,
        )


_INFLUX_SELECT = (
    'SELECT count("status_code") AS total, sum("ok") AS successful, mean("duration") AS avg, '
    'median("duration") AS median, percentile("duration", 99) AS p99 FROM {measurement} '
    "WHERE time >= $start AND time < $end{customer} GROUP BY {group}"
)


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxStats(StatsStore):
    """Stats from InfluxDB 1.x with InfluxQL; user input travels as bound parameters only."""

    def __init__(self, base_url: str, database: str, measurement: str, rp: str | None = None):
        self.base_url = base_url
        self.database = database
        self.measurement = measurement
        source = _quote_ident(measurement)
        self._from = f"{_quote_ident(rp)}.{source}" if rp else source
        user = os.environ.get("INFLUXDB_USER", "")
        auth = (user, os.environ.get("INFLUXDB_PASSWORD", "")) if user else None
        self._client = httpx.Client(base_url=base_url, timeout=30.0, auth=auth)

    def _query(self, q: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            resp = self._client.get(
                "/query",
                params={"db": self.database, "q": q, "params": orjson.dumps(params).decode()},
            )
        except httpx.HTTPError as exc:
            raise StoreUnavailableError(f"InfluxDB at {self.base_url}: {exc}") from None
        if resp.status_code != 200:
            raise StoreUnavailableError(
                f"InfluxDB at {self.base_url} answered {resp.status_code}: {resp.text[:200]}"
            )
        series: list[dict[str, Any]] = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise StoreUnavailableError(f"InfluxDB query failed: {result['error']}")
            series.extend(result.get("series", []))
        return series

    def _run(self, start: date, end: date, customer: str | None) -> dict[str, CustomerStats]:
        lo, hi = _bounds(start, end)
        params = {
            "start": lo.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": hi.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        where = ""
        if customer is not None:
            where = ' AND "customer_id" = $customer'
            params["customer"] = customer
        out: dict[str, CustomerStats] = {}
        totals = self._query(
            _INFLUX_SELECT.format(measurement=self._from, customer=where, group='"customer_id"'),
            params,
        )
        for s in totals:
            row = dict(zip(s["columns"], s["values"][0], strict=True))
            cid = s["tags"]["customer_id"]
            if row["total"]:
                out[cid] = CustomerStats(
                    customer_id=cid,
                    from_date=start,
                    to_date=end,
                    days=[],
                    total=Stats(**self._row_stats(row)),
                )
        if out:
            daily = self._query(
                _INFLUX_SELECT.format(
                    measurement=self._from,
                    customer=where,
                    group='time(1d), "customer_id" fill(none)',
                ),
                params,
            )
            for s in daily:
                cid = s["tags"]["customer_id"]
                for values in s["values"]:
                    row = dict(zip(s["columns"], values, strict=True))
                    if cid in out and row["total"]:
                        day = datetime.fromisoformat(row["time"].replace("Z", "+00:00")).date()
                        out[cid].days.append(DayStats(date=day, **self._row_stats(row)))
        return out

    @staticmethod
    def _row_stats(row: dict[str, Any]) -> dict[str, Any]:
        return _stats(
            int(row["total"]), int(row["successful"] or 0), row["avg"], row["median"], row["p99"]
        )

    def customer_stats(
        self, customer_id: str, start: date, end: date, *, exact: bool = False
    ) -> CustomerStats:
        """Stats of one customer (see :class:`StatsStore`); always exact."""
        found = self._run(start, end, customer_id)
        if customer_id in found:
            return found[customer_id]
        known = self._query(
            f'SELECT count("status_code") FROM {self._from} WHERE "customer_id" = $customer',
            {"customer": customer_id},
        )
        if not known:
            raise UnknownCustomerError(f"no requests of customer {customer_id!r}")
        return _empty(customer_id, start, end)

    def all_stats(self, start: date, end: date, *, exact: bool = False) -> AllCustomersStats:
        """Stats of every customer (see :class:`StatsStore`); always exact."""
        found = self._run(start, end, None)
        return AllCustomersStats(
            from_date=start, to_date=end, customers=[found[c] for c in sorted(found)]
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def open_stats_store(url: str) -> StatsStore:
    """``duckdb:///PATH`` or ``influxdb+http[s]://HOST:8086/DB[?measurement=M&rp=RP]``."""
    lowered = url.lower()
    if lowered.startswith("duckdb:"):
        from logferry.sinks.duckdb import parse_duckdb_url

        path, _index = parse_duckdb_url(url)
        return DuckDBStats(str(path))
    if lowered.startswith(("influxdb+http://", "influxdb+https://")):
        from logferry.sinks.influxdb import parse_influx_url

        target = parse_influx_url(url)
        base = target.endpoint.removesuffix("/write")
        return InfluxStats(base, target.params["db"], target.measurement, target.params.get("rp"))
    raise ConfigError(
        f"unsupported stats store {url!r}: use duckdb:///PATH or influxdb+http://HOST:8086/DB"
    )
