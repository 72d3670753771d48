"""Bucket and log notifications → work items.

One entry point per delivery path (`parse_event` for Lambda/any JSON, `parse_sqs_record` for one
SQS message, `parse_code_engine` for an IBM Code Engine job's environment). Each recognised shape
is a small parser in a table; envelopes (SNS, SQS) unwrap and dispatch their payload through the
same table, so S3 → SNS → SQS needs no special case.

Keys: S3 event notifications URL-encode object keys (space as ``+``), and so do S3 events sent to
EventBridge (AWS Lambda Powertools decodes both with ``unquote_plus``); they are decoded exactly
once, so a literal ``%3A`` in a key (IBM flow-log CRNs) survives. IBM COS keys in ``CE_DATA`` are
plain and are never decoded.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import islice
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import orjson

__all__ = [
    "LogEvents",
    "NotificationError",
    "WorkItem",
    "parse_code_engine",
    "parse_event",
    "parse_sqs_record",
    "s3_event_body",
    "s3_event_record",
]


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One object to ship: where it is, what S3/COS said about it, and how the news arrived."""

    bucket: str
    key: str
    size: int | None
    etag: str | None  # quotes stripped
    event: str  # e.g. "ObjectCreated:Put", "Object Created", "Object:Write"
    source: str  # "s3" | "sns" | "sqs" | "eventbridge" | "cos": the outermost envelope
    message_id: str | None  # the SQS messageId it came from (for batchItemFailures)


@dataclass(frozen=True, slots=True)
class LogEvents:
    """Log events from one CloudWatch Logs subscription delivery (a DATA_MESSAGE)."""

    log_group: str
    log_stream: str
    events: list[tuple[str, int, str]]  # (id, timestamp_ms, message)
    message_id: str | None


Item = WorkItem | LogEvents


class NotificationError(ValueError):
    """A notification of unknown or broken shape; the message names what arrived, never its values."""


# --- describing what arrived, bounded and without values -------------------------------------

_MAX_KEYS = 8
_MAX_NAME = 40
_MAX_DEPTH = 16
#: A CloudWatch Logs subscription delivery inflates to a few MB (its events are at most 1 MB
#: compressed): anything past this is refused, not held in memory.
_MAX_INFLATED = 64 << 20


def _clip(text: str, limit: int = _MAX_NAME) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(value: object) -> str:
    """Name the shape of a value (type, keys, lengths) without echoing its content."""
    if isinstance(value, Mapping):
        keys = [_clip(str(k)) for k in islice(value, _MAX_KEYS)]
        more = f" and {len(value) - _MAX_KEYS} more" if len(value) > _MAX_KEYS else ""
        return f"a JSON object with keys {keys}{more}"
    if isinstance(value, list):
        return f"a JSON array of {len(value)} items"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


def _label(value: object) -> str:
    """Quote a short identifying value (an event name, a source) clipped to a safe length."""
    return repr(_clip(str(value)))


# --- small field readers ----------------------------------------------------------------------


def _obj(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise NotificationError(f"{where}: '{name}' should be an object, got {_describe(value)}")
    return value


def _text(parent: Mapping[str, Any], name: str, where: str) -> str:
    return _required(parent.get(name), name, where)


def _required(value: object, name: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise NotificationError(f"{where}: '{name}' should be a string, got {_describe(value)}")
    return value


def _size(value: object, where: str) -> int | None:
    """Sizes arrive as numbers (AWS) or numeric strings (COS); absent means unknown."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise NotificationError(
        f"{where}: object size should be a whole number, got {_describe(value)}"
    )


def _etag(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip('"') or None


def _loads(text: str | bytes | bytearray, where: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        # Thousands of nested brackets: refused here, so the messages around it still ship.
        raise NotificationError(
            f"{where} is JSON nested too deeply to parse: {_describe(text)}"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = (
            f"{exc.msg} at position {exc.pos}"
            if isinstance(exc, json.JSONDecodeError)
            else "not UTF-8"
        )
        raise NotificationError(f"{where} is not JSON ({detail}): {_describe(text)}") from None


# --- the dispatch table -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Via:
    """How a payload reached us: the outermost envelope and the SQS message it rode in."""

    source: str | None = None
    message_id: str | None = None
    depth: int = 0  # envelopes and arrays opened so far

    def through(self, source: str) -> _Via:
        return self if self.source is not None else replace(self, source=source)

    def inside(self, where: str) -> _Via:
        """One level deeper; real notifications nest a few levels (SNS in SQS), never dozens."""
        if self.depth >= _MAX_DEPTH:
            raise NotificationError(f"{where}: nested too deeply (more than {_MAX_DEPTH} levels)")
        return replace(self, depth=self.depth + 1)


_Parser = Callable[[Mapping[str, Any], _Via], list[Item]]


def _dispatch(payload: object, via: _Via, where: str = "notification") -> list[Item]:
    """Route one JSON value to the first parser whose shape matches it."""
    via = via.inside(where)
    if isinstance(payload, str | bytes | bytearray):
        payload = _loads(payload, where)
    if isinstance(payload, list):
        return [item for element in payload for item in _dispatch(element, via, where)]
    if isinstance(payload, Mapping):
        for matches, parse in _SHAPES:
            if matches(payload):
                return parse(payload, via)
    raise NotificationError(f"unknown {where}: {_describe(payload)}")


def _ignore(_payload: Mapping[str, Any], _via: _Via) -> list[Item]:
    return []


def _records(payload: Mapping[str, Any], via: _Via) -> list[Item]:
    """`Records[]` as Lambda delivers S3, SNS and SQS triggers; each record names its source."""
    items: list[Item] = []
    for record in payload["Records"]:
        if not isinstance(record, Mapping):
            raise NotificationError(f"unknown record: {_describe(record)}")
        origin = str(record.get("eventSource") or record.get("EventSource") or "")
        if origin == "aws:sqs":
            items.extend(parse_sqs_record(record))
        elif origin == "aws:sns" or "Sns" in record:
            items.extend(_sns_record(record, via))
        elif origin.endswith(":s3") or "s3" in record:
            items.extend(_s3_record(record, via))
        else:
            raise NotificationError(
                f"unknown record (eventSource {_label(origin)}): {_describe(record)}"
            )
    return items


def _s3_record(record: Mapping[str, Any], via: _Via) -> list[Item]:
    """One S3 event notification record; only ObjectCreated:* becomes work."""
    event = str(record.get("eventName", ""))
    # MinIO and Ceph prefix the name with "s3:"; removals, restores, tagging... are not new data.
    if not event.removeprefix("s3:").startswith("ObjectCreated:"):
        return []
    where = f"S3 record {_label(event)}"
    s3 = _obj(record, "s3", where)
    obj = _obj(s3, "object", where)
    return [
        WorkItem(
            bucket=_text(_obj(s3, "bucket", where), "name", where),
            key=unquote_plus(_text(obj, "key", where)),
            size=_size(obj.get("size"), where),
            etag=_etag(obj.get("eTag")),
            event=event,
            source=via.source or "s3",
            message_id=via.message_id,
        )
    ]


def _sns_record(record: Mapping[str, Any], via: _Via) -> list[Item]:
    return _sns_envelope(_obj(record, "Sns", "SNS record"), via)


def _sns_envelope(envelope: Mapping[str, Any], via: _Via) -> list[Item]:
    """An SNS notification (Lambda `Sns` or an SQS body from SNS fan-out); `Message` is JSON text."""
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise NotificationError(f"SNS Message should be a string, got {_describe(message)}")
    return _dispatch(message, via.through("sns"), "SNS Message")


def _eventbridge(event: Mapping[str, Any], via: _Via) -> list[Item]:
    """An S3 event delivered by EventBridge; only "Object Created" becomes work."""
    source, kind = event.get("source"), event.get("detail-type")
    if source != "aws.s3":
        raise NotificationError(
            f"unknown EventBridge event: source {_label(source)}, detail-type {_label(kind)}"
        )
    if kind != "Object Created":
        return []
    where = "EventBridge 'Object Created'"
    detail = _obj(event, "detail", where)
    obj = _obj(detail, "object", where)
    return [
        WorkItem(
            bucket=_text(_obj(detail, "bucket", where), "name", where),
            key=unquote_plus(_text(obj, "key", where)),
            size=_size(obj.get("size"), where),
            etag=_etag(obj.get("etag")),
            event="Object Created",
            source=via.source or "eventbridge",
            message_id=via.message_id,
        )
    ]


def _awslogs(payload: Mapping[str, Any], via: _Via) -> list[Item]:
    """A CloudWatch Logs subscription delivery: `awslogs.data` is base64 of gzipped JSON."""
    data = _obj(payload, "awslogs", "CloudWatch Logs subscription").get("data")
    if not isinstance(data, str):
        raise NotificationError(
            f"CloudWatch Logs 'awslogs.data' should be a string, got {_describe(data)}"
        )
    try:
        inflater = zlib.decompressobj(31)  # gzip; bounded: a queue message may be a bomb
        raw = inflater.decompress(base64.b64decode(data, validate=True), _MAX_INFLATED + 1)
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise NotificationError(
            f"CloudWatch Logs 'awslogs.data' is not base64 gzip ({type(exc).__name__}): {_describe(data)}"
        ) from None
    if len(raw) > _MAX_INFLATED:
        raise NotificationError(
            f"CloudWatch Logs 'awslogs.data' inflates to over {_MAX_INFLATED >> 20} MiB: refused"
        )
    if not inflater.eof:
        raise NotificationError("CloudWatch Logs 'awslogs.data' is not base64 gzip (truncated)")
    decoded = _loads(raw, "CloudWatch Logs 'awslogs.data'")
    if not isinstance(decoded, Mapping) or "messageType" not in decoded:
        raise NotificationError(f"unknown CloudWatch Logs data: {_describe(decoded)}")
    return _cloudwatch_data(decoded, via)


def _cloudwatch_data(message: Mapping[str, Any], via: _Via) -> list[Item]:
    """Decoded subscription data; CONTROL_MESSAGE is CloudWatch checking the destination."""
    kind = message.get("messageType")
    if kind == "CONTROL_MESSAGE":
        return []
    if kind != "DATA_MESSAGE":
        raise NotificationError(f"unknown CloudWatch Logs messageType {_label(kind)}")
    where = "CloudWatch Logs DATA_MESSAGE"
    raw_events = message.get("logEvents")
    if not isinstance(raw_events, list):
        raise NotificationError(
            f"{where}: 'logEvents' should be an array, got {_describe(raw_events)}"
        )
    events: list[tuple[str, int, str]] = []
    for raw in raw_events:
        if not isinstance(raw, Mapping):
            raise NotificationError(f"{where}: log event should be an object, got {_describe(raw)}")
        stamp = raw.get("timestamp")
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise NotificationError(
                f"{where}: 'timestamp' should be a number, got {_describe(stamp)}"
            )
        body = raw.get("message")
        if not isinstance(body, str):
            raise NotificationError(f"{where}: 'message' should be a string, got {_describe(body)}")
        events.append((str(raw.get("id", "")), stamp, body))
    return [
        LogEvents(
            log_group=_text(message, "logGroup", where),
            log_stream=_text(message, "logStream", where),
            events=events,
            message_id=via.message_id,
        )
    ]


def _cos(data: Mapping[str, Any], via: _Via) -> list[Item]:
    return list(_cos_items(data, via, {}))


def _cos_items(data: Mapping[str, Any], via: _Via, env: Mapping[str, str]) -> list[WorkItem]:
    """An IBM COS event body (Code Engine `CE_DATA`, or the HTTP body an app receives)."""
    notification = data.get("notification")
    note: Mapping[str, Any] = notification if isinstance(notification, Mapping) else {}
    operation = str(data.get("operation") or note.get("event_type") or "")
    if not operation:
        # Without an operation in the body, the CloudEvents type says write or delete.
        operation = (
            "Object:Delete" if env.get("CE_TYPE", "").endswith(".delete") else "Object:Write"
        )
    if not operation.startswith("Object:Write"):
        return []
    where = f"COS event {_label(operation)}"
    bucket = (
        data.get("bucket") or note.get("bucket_name") or env.get("CE_SOURCE", "").rpartition("/")[2]
    )
    key = data.get("key") or note.get("object_name") or env.get("CE_SUBJECT")
    return [
        WorkItem(
            bucket=_required(bucket, "bucket", where),
            key=_required(key, "key", where),  # COS keys are plain: never URL-decoded
            size=_size(note.get("object_length"), where),
            etag=_etag(note.get("object_etag")),
            event=operation,
            source=via.source or "cos",
            message_id=via.message_id,
        )
    ]


_COS_FIELDS = frozenset({"notification", "operation", "bucket", "key"})


def _is_cos(payload: Mapping[str, Any]) -> bool:
    return isinstance(payload.get("notification"), Mapping) and (
        "operation" in payload or "bucket" in payload
    )


# First match wins; the order matters only where shapes could overlap (none do today).
_SHAPES: tuple[tuple[Callable[[Mapping[str, Any]], bool], _Parser], ...] = (
    (lambda p: p.get("Event") == "s3:TestEvent", _ignore),
    (lambda p: isinstance(p.get("Records"), list), _records),
    (lambda p: p.get("Type") == "Notification" and "Message" in p, _sns_envelope),
    (lambda p: "detail-type" in p and "detail" in p, _eventbridge),
    (lambda p: isinstance(p.get("awslogs"), Mapping), _awslogs),
    (lambda p: "messageType" in p and "logEvents" in p, _cloudwatch_data),
    (_is_cos, _cos),
)


# --- public entry points ----------------------------------------------------------------------


def parse_event(event: object) -> list[WorkItem | LogEvents]:
    """Parse a Lambda event or any notification JSON value (or its text) into work items.

    A bad SQS record fails the whole call; use `parse_sqs_record` per record for partial batches.
    """
    return _dispatch(event, _Via())


def parse_sqs_record(record: Mapping[str, Any]) -> list[WorkItem | LogEvents]:
    """Parse one SQS record's body; every item carries its messageId, errors concern this record only."""
    message_id = record.get("messageId")
    if not isinstance(message_id, str):
        message_id = None
    where = f"SQS message {_label(message_id)} body" if message_id else "SQS message body"
    body = record.get("body")
    if not isinstance(body, str):
        raise NotificationError(f"{where} should be a string, got {_describe(body)}")
    return _dispatch(body, _Via(source="sqs", message_id=message_id), where)


def parse_code_engine(env: Mapping[str, str]) -> list[WorkItem]:
    """Parse the COS event IBM Code Engine hands a job in `CE_DATA` (with `CE_TYPE`, `CE_SOURCE`, ...)."""
    context = f"CE_TYPE {_label(env.get('CE_TYPE', ''))}"
    text = env.get("CE_DATA")
    if not text:
        raise NotificationError(f"no CE_DATA in the environment ({context})")
    data = _loads(text, f"CE_DATA ({context})")
    if not isinstance(data, Mapping) or not _COS_FIELDS.intersection(data):
        raise NotificationError(f"unknown CE_DATA ({context}): {_describe(data)}")
    return _cos_items(data, _Via(source="cos"), env)


def s3_event_record(
    bucket: str,
    key: str,
    size: int | None,
    etag: str | None,
    *,
    event: str = "ObjectCreated:Put",
    time_ms: int | None = None,
) -> dict[str, Any]:
    """One S3 event notification record naming an object, as ``parse_event`` reads it back
    (the key URL-encoded as S3 does): what logferry itself publishes to work queues."""
    record: dict[str, Any] = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": event}
    if time_ms is not None:
        moment = datetime.fromtimestamp(time_ms / 1000, UTC)
        record["eventTime"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": size}
    if etag:
        obj["eTag"] = etag
    record["s3"] = {"bucket": {"name": bucket}, "object": obj}
    return record


def s3_event_body(records: list[dict[str, Any]]) -> bytes:
    """A notification message holding ``records`` (see :func:`s3_event_record`)."""
    return orjson.dumps({"Records": records})
