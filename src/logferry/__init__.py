"""logferry: ferry logs from buckets, streams and files to where people read them.

Library use::

    from logferry import ship
    result = ship("s3://my-bucket/logs/", to="file:///tmp/out", ledger="sqlite:///ledger.db")
    print(result.to_dict())
"""

from logferry.api import ship
from logferry.records import Batch, ObjectInfo, Record
from logferry.runner import ShipResult

__all__ = ["Batch", "ObjectInfo", "Record", "ShipResult", "ship"]
__version__ = "0.1.0"
