"""logferry: ferry logs from buckets, streams and files to where people read them.

Library use::

    from logferry import ShipOptions, ship
    result = ship("s3://my-bucket/logs/", "file:///tmp/out", ShipOptions(workers=8),
                  ledger="sqlite:///ledger.db")
    print(result.to_dict())
"""

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
