"""IBM Code Engine job: ship the object a COS subscription named (``CE_DATA``), then catch up.

Exits non-zero when anything failed, so Code Engine's retry applies. In an array job
(``JOB_INDEX`` / ``JOB_ARRAY_SIZE``) each index catches up its own share of the keys, by a
stable hash: together the indices ship every object exactly once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

from logferry.engine import Progress, ShipResult
from logferry.errors import ConfigError
from logferry.ledger import open_ledger
from logferry.notifications import NotificationError, parse_code_engine
from logferry.pipeline import Pipeline
from logferry.serverless.common import config_from_env, ship_items


def _shard(env: Mapping[str, str]) -> tuple[int, int]:
    try:
        index = int(env.get("JOB_INDEX", "0") or 0)
        size = int(env.get("JOB_ARRAY_SIZE", "1") or 1)
    except ValueError:
        raise ConfigError("JOB_INDEX and JOB_ARRAY_SIZE must be integers") from None
    if size < 1 or not 0 <= index < size:
        raise ConfigError(f"JOB_INDEX {index} is not within JOB_ARRAY_SIZE {size}")
    return index, size


def run_job(
    env: Mapping[str, str] | None = None,
    *,
    catchup: bool = True,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> tuple[list[ShipResult], list[str]]:
    """Run the job; return the catch-up results and the errors of notified objects."""
    env = os.environ if env is None else env
    config = config_from_env(env)
    index, size = _shard(env)
    pipeline = Pipeline(config, stop)
    ledger = open_ledger(config.ledger)
    errors: list[str] = []
    try:
        if env.get("CE_DATA"):
            try:
                items = parse_code_engine(env)
            except NotificationError as exc:
                raise ConfigError(f"CE_DATA: {exc}") from None
            outcome = ship_items(pipeline, items, ledger, env, progress)
            errors = [f"{b}/{k}: {e}" for (b, k), e in outcome.errors.items()]
        results: list[ShipResult] = []
        if catchup:
            results = pipeline.run_once(
                ledger,
                (lambda _name: progress) if progress else None,
                shard_index=index,
                shard_count=size,
            )
        return results, errors
    finally:
        pipeline.close()
        ledger.close()
