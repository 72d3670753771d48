"""``ship`` with keyword options, for tests: builds the typed options the library takes."""

from __future__ import annotations

from typing import Any

import logferry
from logferry.config import ShipOptions, SinkOptions
from logferry.engine import Router, ShipResult, StreamRunner
from logferry.errors import ConfigError

_SINK_FIELDS = set(SinkOptions.model_fields)


def ship(source: Any, to: Any, **kw: Any) -> ShipResult:
    """``logferry.ship`` taking ``key=``, ``latest=``, ``all=`` and option names as keywords."""
    passed = {k: kw.pop(k) for k in ("ledger", "endpoint_url", "progress", "stop") if k in kw}
    sink = {k: kw.pop(k) for k in list(kw) if k in _SINK_FIELDS}
    key, latest, everything = kw.pop("key", None), kw.pop("latest", None), kw.pop("all", False)
    if sum(map(bool, (key, latest, everything))) > 1:
        raise ConfigError("--key, --latest and --all are exclusive: pick one")
    if key:
        kw.update(mode="key", keys=(key,) if isinstance(key, str) else tuple(key))
    elif latest:
        kw.update(mode="latest", latest=latest)
    elif everything:
        kw.update(mode="all", force=True)
    if "timestamp_fields" in kw:
        kw["timestamp_fields"] = tuple(kw["timestamp_fields"])
    return logferry.ship(source, to, ShipOptions(**kw), sink_options=SinkOptions(**sink), **passed)


def stream_runner(
    source: Any,
    sinks: list[Any],
    ledger: Any,
    options: ShipOptions | None = None,
    *,
    follow: bool = True,
    router: Router | None = None,
    **kw: Any,
) -> StreamRunner:
    """A :class:`StreamRunner` to every sink in ``sinks`` (or along ``router``)."""
    opts = (options or ShipOptions()).model_copy(update={"follow": follow})
    return StreamRunner(source, router or Router.to_all(sinks, opts.format), ledger, opts, **kw)
