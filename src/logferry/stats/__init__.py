"""Per-customer request statistics (SLIs) computed by the store: DuckDB or InfluxDB."""

from __future__ import annotations

from typing import TYPE_CHECKING

from logferry.lazy import lazy_exports

if TYPE_CHECKING:
    from logferry.stats.queries import CustomerStats as CustomerStats
    from logferry.stats.queries import DayStats as DayStats
    from logferry.stats.queries import Stats as Stats
    from logferry.stats.queries import StatsStore as StatsStore
    from logferry.stats.queries import UnknownCustomerError as UnknownCustomerError
    from logferry.stats.queries import open_stats_store as open_stats_store

__all__ = [
    "CustomerStats",
    "DayStats",
    "Stats",
    "StatsStore",
    "UnknownCustomerError",
    "open_stats_store",
]


# The queries (httpx, pydantic models) load on first use: the duckdb sink, which the
# registry imports for every command, needs only ``logferry.stats.rollups``.
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "logferry.stats.queries"))
