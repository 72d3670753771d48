"""The environment contract every serverless entry point shares, and shipping work items.

``LOGFERRY_CONFIG`` (a pipeline YAML path or ``s3://`` URL) wins when set. Otherwise:
``LOGFERRY_SINKS`` (comma-separated sink URLs; default a Mezmo sink from ``LOGDNA_ENDPOINT``
or ``LOGDNA_REGION``), ``LOGDNA_INGESTION_KEY``, ``LOGFERRY_LEDGER``, ``LOGFERRY_FORMAT``
(default ``auto``), ``LOGFERRY_SOURCE`` (the job's source; default
``cos://$COS_BUCKET/$COS_PREFIX`` when ``COS_ENDPOINT`` is set, else ``s3://…``),
``LOGFERRY_BUCKETS`` (the buckets whose notifications are shipped; default the configured
sources' buckets, see ``plan_for``) and ``LOGFERRY_DEADLINE_MARGIN_MS`` (default 10000).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from logferry.config import PipelineConfig, SinkConfig, SourceConfig, load_pipeline
from logferry.engine import Progress, Router
from logferry.engine.items import ItemsOutcome, ship_work_items
from logferry.errors import ConfigError
from logferry.ledger import Ledger
from logferry.notifications import WorkItem
from logferry.pipeline import Pipeline, SourcePlan
from logferry.sources import open_source

DEFAULT_DEADLINE_MARGIN_MS = 10_000


def _default_sinks(env: Mapping[str, str]) -> list[str]:
    if env.get("LOGFERRY_SINKS"):
        return [s.strip() for s in env["LOGFERRY_SINKS"].split(",") if s.strip()]
    endpoint = env.get("LOGDNA_ENDPOINT", "").strip()
    if endpoint:
        if "://" not in endpoint:
            endpoint = f"https://{endpoint}"
        scheme, rest = endpoint.split("://", 1)
        return [f"mezmo+{scheme}://{rest}"]
    region = env.get("LOGDNA_REGION", "").strip()
    if region:
        return [f"logdna:{region}"]
    raise ConfigError(
        "no sink configured: set LOGFERRY_SINKS, LOGDNA_ENDPOINT or LOGDNA_REGION "
        "(or LOGFERRY_CONFIG for a pipeline file)"
    )


def default_source(env: Mapping[str, str]) -> str:
    """``LOGFERRY_SOURCE``, else the bucket the original IBM job used."""
    if env.get("LOGFERRY_SOURCE"):
        return env["LOGFERRY_SOURCE"]
    bucket = env.get("COS_BUCKET", "")
    if not bucket:
        raise ConfigError("no source: set LOGFERRY_SOURCE or COS_BUCKET")
    scheme = "cos" if env.get("COS_ENDPOINT") else "s3"
    return f"{scheme}://{bucket}/{env.get('COS_PREFIX', '')}"


def config_from_env(
    env: Mapping[str, str] | None = None, *, need_source: bool = True
) -> PipelineConfig:
    """The pipeline an entry point runs, from ``LOGFERRY_CONFIG`` or the variables above."""
    env = os.environ if env is None else env
    if env.get("LOGFERRY_CONFIG"):
        return load_pipeline(env["LOGFERRY_CONFIG"], env)
    sinks = {f"sink{i}": SinkConfig(url=url) for i, url in enumerate(_default_sinks(env))}
    fmt = env.get("LOGFERRY_FORMAT", "auto")
    sources = {}
    if need_source or env.get("LOGFERRY_SOURCE") or env.get("COS_BUCKET"):
        sources["default"] = SourceConfig(url=default_source(env), format=fmt, sinks=list(sinks))
    else:
        # Lambda: buckets come from the events. This entry only carries the routes (format
        # and sinks) that plan_for() copies for each bucket; it is never listed.
        sources["events"] = SourceConfig(url=".", format=fmt, sinks=list(sinks))
    try:
        return PipelineConfig(ledger=env.get("LOGFERRY_LEDGER"), sinks=sinks, sources=sources)
    except ValueError as exc:
        raise ConfigError(f"environment: {exc}") from None


def deadline_margin_ms(env: Mapping[str, str] | None = None) -> int:
    """How long before a deadline to checkpoint and stop."""
    env = os.environ if env is None else env
    raw = env.get("LOGFERRY_DEADLINE_MARGIN_MS", str(DEFAULT_DEADLINE_MARGIN_MS))
    try:
        return max(0, int(raw))
    except ValueError:
        raise ConfigError(
            f"LOGFERRY_DEADLINE_MARGIN_MS must be milliseconds, got {raw!r}"
        ) from None


def allowed_buckets(env: Mapping[str, str]) -> frozenset[str] | None:
    """``LOGFERRY_BUCKETS`` as a set; ``None`` for ``*`` (any bucket), empty when unset."""
    names = {b.strip() for b in env.get("LOGFERRY_BUCKETS", "").split(",") if b.strip()}
    return None if "*" in names else frozenset(names)


def plan_for(pipeline: Pipeline, bucket: str, env: Mapping[str, str]) -> SourcePlan:
    """The source that ships ``bucket``'s notifications; a bucket nobody allowed is refused.

    Allowed are the buckets in ``LOGFERRY_BUCKETS`` (``*``: any) and, when it is unset, the
    buckets of the configured sources (``LOGFERRY_CONFIG``, or ``LOGFERRY_SOURCE`` /
    ``COS_BUCKET``). Anyone who can send to the queue must not make us read other buckets.
    """
    allowed = allowed_buckets(env)
    if allowed and bucket not in allowed:
        raise ConfigError(
            f"bucket {bucket!r} is not in LOGFERRY_BUCKETS ({', '.join(sorted(allowed))}): "
            "the notification is refused"
        )
    plan = pipeline.plan_for_bucket(bucket)
    if plan is not None:
        return plan
    if env.get("LOGFERRY_CONFIG"):
        raise ConfigError(f"no source in {env['LOGFERRY_CONFIG']} reads bucket {bucket!r}")
    if not allowed and allowed is not None:
        configured = sorted(
            b for p in pipeline.plans if (b := getattr(p.source, "bucket", None)) is not None
        )
        raise ConfigError(
            f"bucket {bucket!r} is not one this function ships "
            f"({', '.join(configured) or 'none configured'}): the notification is refused; "
            "list the buckets to ship in LOGFERRY_BUCKETS"
        )
    template = pipeline.plans[0]
    scheme = "cos" if env.get("COS_ENDPOINT") else "s3"
    source = open_source(f"{scheme}://{bucket}")
    plan = SourcePlan(f"bucket:{bucket}", source, Router(template.router.routes))
    pipeline.plans.append(plan)
    return plan


def ship_items(
    pipeline: Pipeline,
    items: list[WorkItem],
    ledger: Ledger,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> ItemsOutcome:
    """Ship the objects notifications named; report per (bucket, key) what is done."""
    env = os.environ if env is None else env
    return ship_work_items(
        items,
        ledger,
        lambda bucket: plan_for(pipeline, bucket, env),
        pipeline.options(),
        stop=pipeline.stop,
        progress=progress,
    )


__all__ = [
    "ItemsOutcome",
    "allowed_buckets",
    "config_from_env",
    "deadline_margin_ms",
    "default_source",
    "plan_for",
    "ship_items",
]
