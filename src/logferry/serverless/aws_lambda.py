"""AWS Lambda entry point: ``logferry.serverless.aws_lambda.handler``.

Handles S3 event notifications, SNS, SQS (with partial batch responses), EventBridge and
CloudWatch Logs subscriptions. Before the invocation's deadline (minus
``LOGFERRY_DEADLINE_MARGIN_MS``) it stops, checkpoints the position in the ledger and
reports the unfinished messages as failed, so the redelivery resumes from the checkpoint.

Set ``LOGFERRY_LEDGER`` to a ledger every invocation can reach (PostgreSQL, or SQLite on
EFS): the default SQLite file in /tmp lives only as long as one execution environment.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from logferry.errors import ConfigError, LogferryError
from logferry.ledger import open_ledger
from logferry.notifications import (
    LogEvents,
    NotificationError,
    WorkItem,
    parse_event,
    parse_sqs_record,
)
from logferry.pipeline import Pipeline
from logferry.records import Batch, ObjectInfo
from logferry.serverless.common import config_from_env, deadline_margin_ms, ship_items

log = logging.getLogger("logferry")

DEFAULT_LAMBDA_LEDGER = "sqlite:////tmp/logferry-ledger.db"


class ShipFailed(RuntimeError):
    """Raised for non-SQS events when something failed, so Lambda retries the invocation."""


def _arm_deadline(context: Any, stop: threading.Event) -> threading.Timer | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    margin = deadline_margin_ms()
    delay = max(0.0, (remaining() - margin) / 1000)
    timer = threading.Timer(delay, stop.set)
    timer.daemon = True
    timer.start()
    return timer


def ship_log_events(pipeline: Pipeline, events: LogEvents) -> None:
    """Ship a CloudWatch Logs subscription delivery to the pipeline's first route's sinks."""
    route = pipeline.plans[0].router.routes[0] if pipeline.plans else None
    if route is None or route.drop:
        return
    source = f"cloudwatch://{events.log_group}"
    first_id = events.events[0][0] if events.events else "empty"
    # One output object per delivery: a file sink then never overwrites an earlier one.
    key = f"{events.log_stream}/{first_id}"
    obj = ObjectInfo(key, 0, first_id, events.events[0][1] if events.events else 0)
    batch = Batch(
        source, key, 0, len(events.events),
        [e[2] for e in events.events], [e[1] for e in events.events],
        nbytes=sum(len(e[2]) for e in events.events), format="cloudwatch",
    )  # fmt: skip
    for sink in route.sinks:
        sink.open(source, obj, 0)
        sink.write(batch)
        sink.commit(source, obj)


def handler(event: Any, context: Any = None) -> dict[str, Any]:
    """The Lambda handler. For SQS it returns ``batchItemFailures``; otherwise it raises on failure."""
    config = config_from_env(need_source=False)
    pipeline = Pipeline(config)
    ledger = open_ledger(
        config.ledger or os.environ.get("LOGFERRY_LEDGER") or DEFAULT_LAMBDA_LEDGER
    )
    timer = _arm_deadline(context, pipeline.stop)
    started = time.monotonic()
    try:
        records = event.get("Records") if isinstance(event, dict) else None
        if (
            isinstance(records, list)
            and records
            and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
        ):
            return _handle_sqs(records, pipeline, ledger)
        items = parse_event(event)
        objects = [i for i in items if isinstance(i, WorkItem)]
        for log_events in (i for i in items if isinstance(i, LogEvents)):
            ship_log_events(pipeline, log_events)
        outcome = ship_items(pipeline, objects, ledger)
        if outcome.errors:
            first = next(iter(outcome.errors.items()))
            raise ShipFailed(
                f"{len(outcome.errors)} of {len(objects)} objects not shipped, e.g. "
                f"{first[0][0]}/{first[0][1]}: {first[1]}"
            )
        return {"shipped": len(outcome.done), "seconds": round(time.monotonic() - started, 3)}
    finally:
        if timer:
            timer.cancel()
        pipeline.close()
        ledger.close()


def _handle_sqs(records: list[dict[str, Any]], pipeline: Pipeline, ledger: Any) -> dict[str, Any]:
    failures: list[str] = []
    items_by_message: dict[str, list[WorkItem]] = {}
    for record in records:
        message_id = str(record.get("messageId", ""))
        try:
            parsed = parse_sqs_record(record)
            for log_events in (i for i in parsed if isinstance(i, LogEvents)):
                ship_log_events(pipeline, log_events)
        except (NotificationError, LogferryError) as exc:
            log.error("SQS message %s: %s", message_id, exc)
            failures.append(message_id)
            continue
        except Exception as exc:
            # Whatever one message does to us, it fails alone: the rest of the batch ships.
            log.error("SQS message %s: %s: %s", message_id, type(exc).__name__, exc)
            failures.append(message_id)
            continue
        items_by_message[message_id] = [i for i in parsed if isinstance(i, WorkItem)]
    objects = [i for items in items_by_message.values() for i in items]
    try:
        outcome = ship_items(pipeline, objects, ledger)
    except ConfigError as exc:
        log.error("cannot ship: %s", exc)
        failures.extend(items_by_message)
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}
    for message_id, items in items_by_message.items():
        # Never acknowledge a message unless every object it named is done in the ledger.
        if not all(outcome.ok(i) for i in items):
            failures.append(message_id)
            for item in items:
                if not outcome.ok(item):
                    log.error("SQS message %s: %s: %s", message_id, item.key,
                              outcome.errors.get((item.bucket, item.key)))  # fmt: skip
    return {"batchItemFailures": [{"itemIdentifier": m} for m in failures]}
