"""The engine every entry point drives: runners for objects and streams on shared parts.

- :mod:`.routing`: which sinks and format a key goes to;
- :mod:`.delivery`: the one retry layer and its typed outcome per batch;
- :mod:`.errorqueue`: failed objects and dead letters (invariant 3);
- :mod:`.leases`: renewing claims, acting on lost ones (invariant 4);
- :mod:`.batching` and :mod:`.buffer`: batches from decoded chunks;
- :mod:`.objects` and :mod:`.streams`: the two runners; :mod:`.drain`: the error queue's retry.
"""

from logferry.engine.delivery import Delivered, Deliverer, Outcome, Refused, RetryLater, RetryPolicy
from logferry.engine.objects import ObjectRunner, follow_bucket
from logferry.engine.results import Failure, Progress, ShipResult, one_line
from logferry.engine.routing import Route, Router
from logferry.engine.streams import StreamRunner

__all__ = [
    "Delivered",
    "Deliverer",
    "Failure",
    "ObjectRunner",
    "Outcome",
    "Progress",
    "Refused",
    "RetryLater",
    "RetryPolicy",
    "Route",
    "Router",
    "ShipResult",
    "StreamRunner",
    "follow_bucket",
    "one_line",
]
