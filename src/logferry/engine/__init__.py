"""The engine every entry point drives: runners for objects and streams on shared parts.

- :mod:`.routing`: which sinks and format a key goes to;
- :mod:`.delivery`: the one retry layer and its typed outcome per batch;
- :mod:`.errorqueue`: failed objects and dead letters (invariant 3);
- :mod:`.leases`: renewing claims, acting on lost ones (invariant 4);
- :mod:`.batching` and :mod:`.buffer`: batches from decoded chunks;
- :mod:`.objects` and :mod:`.streams`: the two runners; :mod:`.drain`: the error queue's retry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from logferry.lazy import lazy_exports

if TYPE_CHECKING:
    from logferry.engine.delivery import Delivered as Delivered
    from logferry.engine.delivery import Deliverer as Deliverer
    from logferry.engine.delivery import Outcome as Outcome
    from logferry.engine.delivery import Refused as Refused
    from logferry.engine.delivery import RetryLater as RetryLater
    from logferry.engine.delivery import RetryPolicy as RetryPolicy
    from logferry.engine.objects import ObjectRunner as ObjectRunner
    from logferry.engine.objects import follow_bucket as follow_bucket
    from logferry.engine.results import Failure as Failure
    from logferry.engine.results import Progress as Progress
    from logferry.engine.results import ShipResult as ShipResult
    from logferry.engine.results import one_line as one_line
    from logferry.engine.routing import Route as Route
    from logferry.engine.routing import Router as Router
    from logferry.engine.streams import StreamRunner as StreamRunner

# Each name is imported from its module on first use: ``logferry.engine.results`` (what the
# CLI's progress printing needs) must not pull in the runners, sinks and metrics with it.
__getattr__ = lazy_exports(
    __name__,
    {
        "Delivered": "logferry.engine.delivery",
        "Deliverer": "logferry.engine.delivery",
        "Outcome": "logferry.engine.delivery",
        "Refused": "logferry.engine.delivery",
        "RetryLater": "logferry.engine.delivery",
        "RetryPolicy": "logferry.engine.delivery",
        "ObjectRunner": "logferry.engine.objects",
        "follow_bucket": "logferry.engine.objects",
        "Failure": "logferry.engine.results",
        "Progress": "logferry.engine.results",
        "ShipResult": "logferry.engine.results",
        "one_line": "logferry.engine.results",
        "Route": "logferry.engine.routing",
        "Router": "logferry.engine.routing",
        "StreamRunner": "logferry.engine.streams",
    },
)


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
