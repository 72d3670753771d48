"""Shipping the objects that notifications name (a Lambda event, a Code Engine job, a queue).

Each entry point finds the source a bucket's notifications go to in its own way (see
``plan_of``); shipping them, and telling which are done, is the same for all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from logferry.engine.objects import ObjectRunner
from logferry.engine.results import Progress, ShipResult
from logferry.errors import ConfigError
from logferry.ledger import Ledger, Status
from logferry.notifications import WorkItem
from logferry.sources import BucketSource

if TYPE_CHECKING:
    from logferry.config import ShipOptions
    from logferry.pipeline import SourcePlan

#: Why a key is not done when its runner neither shipped nor failed it: held by another
#: runner (a live claim), or the run was stopped first.
NOT_FINISHED = "not finished: held by another runner, or stopped"


@dataclass
class ItemsOutcome:
    """Which work items shipped, per (bucket, key)."""

    done: set[tuple[str, str]] = field(default_factory=set)
    errors: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Items whose failure may pass on a later attempt (sink outage, source error, held
    #: by another runner); the rest failed for good (refused, undecodable, refused bucket).
    transient: set[tuple[str, str]] = field(default_factory=set)
    #: Items neither shipped nor failed here: another runner holds their claim (or the run
    #: stopped). Not a failure of the item, so they never count towards dead-lettering.
    held: set[tuple[str, str]] = field(default_factory=set)
    #: Items found done in the ledger for the object's current version, not shipped again.
    already: set[tuple[str, str]] = field(default_factory=set)
    results: list[ShipResult] = field(default_factory=list)

    def ok(self, item: WorkItem) -> bool:
        """True when the item's object is done in the ledger."""
        return (item.bucket, item.key) in self.done


def ship_work_items(
    items: list[WorkItem],
    ledger: Ledger,
    plan_of: Callable[[str], SourcePlan],
    options: ShipOptions,
    *,
    stop: threading.Event,
    progress: Progress | None = None,
    owner: str | None = None,
) -> ItemsOutcome:
    """Ship the objects ``items`` name; report per (bucket, key) what is done.

    ``plan_of(bucket)`` returns the source that ships a bucket's notifications, or raises
    :class:`ConfigError` when nobody allowed that bucket (its items are refused, not read).
    ``options`` are the runner's (its ``mode`` and ``keys`` are set here).
    """
    outcome = ItemsOutcome()
    by_bucket: dict[str, list[str]] = {}
    for item in items:
        by_bucket.setdefault(item.bucket, []).append(item.key)
    for bucket, keys in by_bucket.items():
        try:
            plan = plan_of(bucket)
        except (ConfigError, ValueError) as exc:  # ValueError: a name no URL can hold
            for key in keys:
                outcome.errors[(bucket, key)] = str(exc)
            continue
        assert isinstance(plan.source, BucketSource)  # plan_for_bucket only finds buckets
        prefix = getattr(plan.source, "prefix", "")
        for key in keys:
            if not key.startswith(prefix):
                outcome.errors[(bucket, key)] = (
                    f"{key!r} is outside the source's prefix {prefix!r}: the notification is refused"
                )
        keys = [k for k in keys if k.startswith(prefix)]
        if not keys:
            continue
        runner = ObjectRunner(
            plan.source,
            plan.router,
            ledger,
            options.model_copy(update={"mode": "key", "keys": tuple(dict.fromkeys(keys))}),
            stop=stop,
            progress=progress,
            owner=owner,
        )
        result = runner.run()
        outcome.results.append(result)
        failed = {f.key: f.error for f in result.failed}
        seen = ledger.lookup(plan.source.id, keys)
        for key in keys:
            entry = seen.get(key)
            if key in runner.already_shipped:
                outcome.already.add((bucket, key))
            if key in runner.already_shipped or (
                entry is not None and entry.status == Status.DONE and key not in failed
            ):
                outcome.done.add((bucket, key))
                continue
            outcome.errors[(bucket, key)] = failed.get(key, NOT_FINISHED)
            if key not in failed:
                outcome.held.add((bucket, key))
            if key not in failed or key in runner.transient:
                outcome.transient.add((bucket, key))
    return outcome


__all__ = ["NOT_FINISHED", "ItemsOutcome", "ship_work_items"]
