"""logferry: ferry logs from buckets, streams and files to where people read them.

Library use::

    from logferry import ShipOptions, ship
    result = ship("s3://my-bucket/logs/", "file:///tmp/out", ShipOptions(workers=8),
                  ledger="sqlite:///ledger.db")
    print(result.to_dict())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logferry.lazy import lazy_exports

if TYPE_CHECKING:
    from logferry.api import drain, ship
    from logferry.config import ShipOptions, SinkOptions
    from logferry.engine import ShipResult
    from logferry.records import Batch, ObjectInfo, Record

__all__ = [
    "Batch",
    "ObjectInfo",
    "Record",
    "ShipOptions",
    "ShipResult",
    "SinkOptions",
    "drain",
    "ship",
]
__version__ = "0.1.0"

# The library's names are imported on first use: importing any ``logferry.*`` module (the
# CLI, a worker, a codec) runs this file first, and the engine, pydantic models and HTTP
# stack behind these names would otherwise be every command's start-up cost.
__getattr__ = lazy_exports(
    __name__,
    {
        "drain": "logferry.api",
        "ship": "logferry.api",
        "ShipOptions": "logferry.config",
        "SinkOptions": "logferry.config",
        "ShipResult": "logferry.engine",
        "Batch": "logferry.records",
        "ObjectInfo": "logferry.records",
        "Record": "logferry.records",
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
