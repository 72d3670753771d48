"""Per-customer request statistics (SLIs) computed by the store: DuckDB or InfluxDB."""

from logferry.stats.queries import (
    CustomerStats,
    DayStats,
    Stats,
    StatsStore,
    UnknownCustomerError,
    open_stats_store,
)

__all__ = [
    "CustomerStats",
    "DayStats",
    "Stats",
    "StatsStore",
    "UnknownCustomerError",
    "open_stats_store",
]
