"""Notification parsing: every trigger shape, nesting, ignored events, keys, and errors.

Payloads follow the shapes in the AWS docs (S3 event message structure v2.1, SNS/SQS Lambda
events, EventBridge "Object Created", CloudWatch Logs subscription data) and IBM Code Engine's
Object Storage subscription docs (CE_DATA and CE_* variables for jobs).
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from logferry.notifications import (
    LogEvents,
    NotificationError,
    WorkItem,
    parse_code_engine,
    parse_event,
    parse_sqs_record,
)

BUCKET = "amzn-s3-demo-bucket"
# An IBM VPC flow-log style key: the CRN's colons are literally "%3A" in the object key.
CRN_KEY = (
    "ibm_vpc_flowlogs_v1/account=aaf1/region=us-south/"
    "vpc-id=r006-1234/subnet-id=0717-abcd/endpoint-type=vnics/"
    "instance-id=crn%3Av1%3Abluemix%3Apublic%3Ais%3Aus-south-1%3Aa%2Faaf1%3A%3Ainstance%3A0717_f1/"
    "vnic-id=0717-e2/record-type=ingress-egress/year=2024/month=05/day=01/hour=12/"
    "stream-id=20240501T120000Z/00000000.gz"
)


# --- payload builders, shaped like the AWS / IBM documentation examples -----------------------


def s3_record(
    key: str, *, event: str = "ObjectCreated:Put", size: int | None = 1024, etag: str = "0123abcd"
) -> dict[str, Any]:
    """One `Records[]` entry as S3 sends it; `key` is the real key, URL-encoded here like S3 does."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": "0A1B2C3D4E5F678901"}
    if size is not None:
        obj |= {"size": size, "eTag": etag}
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-west-2",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "eventName": event,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "logferry",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{BUCKET}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2024-05-01T12:00:00.000Z",
    "Bucket": BUCKET,
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sns_envelope(message: object) -> dict[str, Any]:
    """The SNS notification JSON (what SNS → SQS puts in the body, and Lambda's `Sns`)."""
    return {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": "arn:aws:sns:us-west-2:123456789012:s3-events",
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2024-05-01T12:00:00.123Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-west-2:123456789012:s3-events:c9135db0",
    }


def sns_lambda_event(*messages: object) -> dict[str, Any]:
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-west-2:123456789012:s3-events:c9135db0",
                "EventSource": "aws:sns",
                "Sns": sns_envelope(message),
            }
            for message in messages
        ]
    }


def sqs_record(
    body: object, message_id: str = "059f36b4-87a3-44ab-83d2-661975830a7d"
) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1545082649183",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1545082649185",
        },
        "messageAttributes": {},
        "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-west-2:123456789012:logferry-queue",
        "awsRegion": "us-west-2",
    }


def eventbridge_event(
    key: str, *, detail_type: str = "Object Created", source: str = "aws.s3"
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),
        "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
        "sequencer": "617f08299329d189",
    }
    if detail_type == "Object Created":
        obj |= {"size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"}
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": source,
        "account": "111122223333",
        "time": "2021-11-12T00:00:00Z",
        "region": "ca-central-1",
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


def cloudwatch_event(message_type: str = "DATA_MESSAGE", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/lambda/checkout",
        "logStream": "2024/05/01/[$LATEST]a1b2c3",
        "subscriptionFilters": ["logferry"],
        "logEvents": [
            {
                "id": "31953106606966983378809025079804211143289615424298221568",
                "timestamp": 1432826855000,
                "message": '{"eventVersion":"1.03","eventName":"DescribeTable"}',
            },
            {
                "id": "31953106606966983378809025079804211143289615424298221569",
                "timestamp": 1432826855001,
                "message": "plain line\twith tab",
            },
        ],
    }
    if message_type == "CONTROL_MESSAGE":
        data |= {
            "owner": "CloudwatchLogs",
            "logGroup": "",
            "logStream": "",
            "subscriptionFilters": [],
            "logEvents": [
                {
                    "id": "",
                    "timestamp": 1432826855000,
                    "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
                }
            ],
        }
    data |= overrides
    return {
        "awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}
    }


def cos_data(key: str = "logs/app.log.gz", operation: str = "Object:Write") -> dict[str, Any]:
    notification = {
        "bucket_name": "mybucket",
        "content_type": "application/gzip",
        "event_type": operation,
        "format": "2.0",
        "object_etag": "db3c21eb1c5beb4be1975302bb2f3e3c",
        "object_length": "16067",
        "object_name": key,
        "request_id": "165f2b57-f009-44d4-8f71-80dba52399fe",
        "request_time": "2020-12-10T18:14:16.738Z",
    }
    if operation == "Object:Delete":
        del notification["object_etag"]
    return {
        "bucket": "mybucket",
        "endpoint": "",
        "key": key,
        "notification": notification,
        "operation": operation,
    }


def ce_env(data: object, action: str = "write", **extra: str) -> dict[str, str]:
    """The environment a Code Engine job run gets for one COS event."""
    return {
        "CE_DATA": data if isinstance(data, str) else json.dumps(data),
        "CE_ID": "b59727ee-9c4e-446a-9261-5616f6d1283b",
        "CE_SOURCE": "https://cloud.ibm.com/catalog/services/cloud-object-storage/mybucket",
        "CE_SPECVERSION": "1.0",
        "CE_TIME": "2021-04-13T20:10:37.631Z",
        "CE_TYPE": f"com.ibm.cloud.cos.document.{action}",
        "CONTENT_TYPE": "application/json",
        "JOB_INDEX": "0",
        **extra,
    }


# --- S3 event notifications -------------------------------------------------------------------


def test_s3_notification_direct() -> None:
    items = parse_event(s3_event(s3_record("logs/2024/05/01/app.log.gz", etag='"0123abcd"')))
    assert items == [
        WorkItem(
            bucket=BUCKET,
            key="logs/2024/05/01/app.log.gz",
            size=1024,
            etag="0123abcd",
            event="ObjectCreated:Put",
            source="s3",
            message_id=None,
        )
    ]


def test_s3_notification_many_records_keep_order() -> None:
    event = s3_event(
        s3_record("a.gz"),
        s3_record("b.gz", event="ObjectCreated:CompleteMultipartUpload"),
        s3_record("c.gz", event="ObjectCreated:Copy"),
    )
    items = parse_event(event)
    assert [(i.key, i.event) for i in items if isinstance(i, WorkItem)] == [
        ("a.gz", "ObjectCreated:Put"),
        ("b.gz", "ObjectCreated:CompleteMultipartUpload"),
        ("c.gz", "ObjectCreated:Copy"),
    ]


@pytest.mark.parametrize(
    "key",
    [
        "folder a/my file (1).log",
        "c++/lib+plus.log",
        "100%/done.log",
        "données/été/日志 ☃.log",
        "dt=2024-05-01/10:47:07;x=y&z.log",
        CRN_KEY,
    ],
    ids=["spaces", "plus", "percent", "unicode", "reserved", "crn"],
)
def test_s3_keys_are_decoded_exactly_once(key: str) -> None:
    (item,) = parse_event(s3_event(s3_record(key)))
    assert isinstance(item, WorkItem)
    assert item.key == key


def test_s3_key_wire_format_examples() -> None:
    """Literal wire values: '+' is a space, '%2B' a plus, '%25' a percent (so CRNs keep '%3A')."""
    record = s3_record("x")
    for wire, expected in [
        ("red+flower.jpg", "red flower.jpg"),
        ("c%2B%2B.log", "c++.log"),
        ("r%C3%A9sum%C3%A9.log", "résumé.log"),
        ("instance-id=crn%253Av1%253Abluemix/x.gz", "instance-id=crn%3Av1%3Abluemix/x.gz"),
    ]:
        record["s3"]["object"]["key"] = wire
        (item,) = parse_event(s3_event(record))
        assert isinstance(item, WorkItem)
        assert item.key == expected


def test_crn_key_url_encoded_by_s3_decodes_back_to_literal_percent() -> None:
    record = s3_record("unused")
    record["s3"]["object"]["key"] = quote_plus(CRN_KEY, safe="/")
    assert "crn%253Av1%253A" in record["s3"]["object"]["key"]
    (item,) = parse_event(s3_event(record))
    assert isinstance(item, WorkItem)
    assert "instance-id=crn%3Av1%3Abluemix%3Apublic" in item.key
    assert item.key == CRN_KEY


@pytest.mark.parametrize(
    "event",
    [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "LifecycleExpiration:Delete",
        "ObjectRestore:Post",
        "ObjectTagging:Put",
        "ObjectAcl:Put",
        "s3:ReducedRedundancyLostObject",
    ],
)
def test_s3_non_creation_events_are_ignored(event: str) -> None:
    assert parse_event(s3_event(s3_record("gone.log", event=event, size=None))) == []


def test_s3_deletions_are_skipped_among_creations() -> None:
    event = s3_event(
        s3_record("old.log", event="ObjectRemoved:Delete", size=None), s3_record("new.log")
    )
    assert [i.key for i in parse_event(event) if isinstance(i, WorkItem)] == ["new.log"]


def test_s3_test_event_is_ignored() -> None:
    assert parse_event(TEST_EVENT) == []


def test_minio_style_record_with_s3_prefix_and_string_size() -> None:
    record = s3_record("a b.log")
    record["eventSource"] = "minio:s3"
    record["eventName"] = "s3:ObjectCreated:Put"
    record["s3"]["object"]["size"] = "42"
    (item,) = parse_event(s3_event(record))
    assert isinstance(item, WorkItem)
    assert (item.key, item.size, item.event, item.source) == (
        "a b.log",
        42,
        "s3:ObjectCreated:Put",
        "s3",
    )


def test_s3_record_without_size_or_etag() -> None:
    record = s3_record("a.log")
    del record["s3"]["object"]["size"], record["s3"]["object"]["eTag"]
    (item,) = parse_event(s3_event(record))
    assert isinstance(item, WorkItem)
    assert (item.size, item.etag) == (None, None)


def test_empty_records_is_no_work() -> None:
    assert parse_event({"Records": []}) == []


def test_json_text_is_accepted() -> None:
    (item,) = parse_event(json.dumps(s3_event(s3_record("a.log"))))
    assert isinstance(item, WorkItem)
    assert item.key == "a.log"


# --- SNS --------------------------------------------------------------------------------------


def test_sns_lambda_event_wrapping_s3() -> None:
    (item,) = parse_event(sns_lambda_event(s3_event(s3_record("via sns/a+b.log"))))
    assert item == WorkItem(
        bucket=BUCKET,
        key="via sns/a+b.log",
        size=1024,
        etag="0123abcd",
        event="ObjectCreated:Put",
        source="sns",
        message_id=None,
    )


def test_sns_lambda_event_with_test_event_and_several_records() -> None:
    event = sns_lambda_event(
        TEST_EVENT, s3_event(s3_record("one.log")), s3_event(s3_record("two.log"))
    )
    assert [i.key for i in parse_event(event) if isinstance(i, WorkItem)] == ["one.log", "two.log"]


def test_sns_envelope_alone_is_understood() -> None:
    (item,) = parse_event(sns_envelope(s3_event(s3_record("x.log"))))
    assert isinstance(item, WorkItem)
    assert item.source == "sns"


def test_sns_message_that_is_not_json_is_an_error() -> None:
    envelope = sns_envelope({})
    envelope["Message"] = "hello, this is a plain text SNS message with a secret=hunter2"
    with pytest.raises(NotificationError, match="SNS Message is not JSON") as info:
        parse_event(envelope)
    assert "hunter2" not in str(info.value)


# --- SQS --------------------------------------------------------------------------------------


def test_sqs_body_s3_event_carries_message_id() -> None:
    record = sqs_record(s3_event(s3_record("q/a.log")), message_id="m-1")
    (item,) = parse_sqs_record(record)
    assert item == WorkItem(
        bucket=BUCKET,
        key="q/a.log",
        size=1024,
        etag="0123abcd",
        event="ObjectCreated:Put",
        source="sqs",
        message_id="m-1",
    )


def test_s3_to_sns_to_sqs() -> None:
    body = sns_envelope(s3_event(s3_record("fan out/c++ (1).log"), s3_record("two.log")))
    items = parse_sqs_record(sqs_record(body, message_id="m-2"))
    assert [(i.key, i.source, i.message_id) for i in items if isinstance(i, WorkItem)] == [
        ("fan out/c++ (1).log", "sqs", "m-2"),
        ("two.log", "sqs", "m-2"),
    ]


def test_sqs_body_eventbridge_event() -> None:
    (item,) = parse_sqs_record(sqs_record(eventbridge_event("eb/x y.log"), message_id="m-3"))
    assert isinstance(item, WorkItem)
    assert (item.key, item.event, item.source, item.message_id) == (
        "eb/x y.log",
        "Object Created",
        "sqs",
        "m-3",
    )


@pytest.mark.parametrize("body", [TEST_EVENT, sns_envelope(TEST_EVENT)], ids=["raw", "via-sns"])
def test_sqs_body_test_event_is_ignored(body: dict[str, Any]) -> None:
    assert parse_sqs_record(sqs_record(body)) == []


def test_sqs_lambda_event_propagates_each_message_id() -> None:
    event = {
        "Records": [
            sqs_record(s3_event(s3_record("a.log")), message_id="m-a"),
            sqs_record(sns_envelope(s3_event(s3_record("b.log"))), message_id="m-b"),
            sqs_record(TEST_EVENT, message_id="m-c"),
        ]
    }
    items = parse_event(event)
    assert [(i.key, i.message_id) for i in items if isinstance(i, WorkItem)] == [
        ("a.log", "m-a"),
        ("b.log", "m-b"),
    ]


def test_sqs_malformed_json_body_fails_that_record_only() -> None:
    good = sqs_record(s3_event(s3_record("ok.log")), message_id="good")
    bad = sqs_record('{"Records": [ {"s3": ', message_id="bad-1")
    outcomes: dict[str, object] = {}
    for record in (good, bad):
        try:
            outcomes[record["messageId"]] = parse_sqs_record(record)
        except NotificationError as exc:
            outcomes[record["messageId"]] = exc
    assert isinstance(outcomes["good"], list)
    assert len(outcomes["good"]) == 1
    error = outcomes["bad-1"]
    assert isinstance(error, NotificationError)
    assert "'bad-1'" in str(error)
    assert "not JSON" in str(error)
    assert '"s3"' not in str(error)  # names the shape, does not echo the body


def test_sqs_unknown_body_names_message_and_keys() -> None:
    with pytest.raises(NotificationError) as info:
        parse_sqs_record(sqs_record({"foo": 1, "bar": {"password": "hunter2"}}, message_id="m-x"))
    message = str(info.value)
    assert "'m-x'" in message
    assert "['foo', 'bar']" in message
    assert "hunter2" not in message


def test_sqs_record_without_body() -> None:
    record = sqs_record({})
    del record["body"]
    with pytest.raises(NotificationError, match="body should be a string, got null"):
        parse_sqs_record(record)


# --- EventBridge ------------------------------------------------------------------------------


def test_eventbridge_object_created() -> None:
    (item,) = parse_event(eventbridge_event("example key+1.log"))
    assert item == WorkItem(
        bucket=BUCKET,
        key="example key+1.log",
        size=5,
        etag="b1946ac92492d2347c6235b4d2611184",
        event="Object Created",
        source="eventbridge",
        message_id=None,
    )


def test_eventbridge_crn_key() -> None:
    (item,) = parse_event(eventbridge_event(CRN_KEY))
    assert isinstance(item, WorkItem)
    assert item.key == CRN_KEY


@pytest.mark.parametrize(
    "detail_type", ["Object Deleted", "Object Restore Completed", "Object Tags Added"]
)
def test_eventbridge_other_s3_events_are_ignored(detail_type: str) -> None:
    assert parse_event(eventbridge_event("x.log", detail_type=detail_type)) == []


def test_eventbridge_from_another_service_is_an_error() -> None:
    event = eventbridge_event(
        "x", detail_type="EC2 Instance State-change Notification", source="aws.ec2"
    )
    with pytest.raises(NotificationError, match=r"source 'aws\.ec2'.*EC2 Instance State-change"):
        parse_event(event)


# --- CloudWatch Logs subscription -------------------------------------------------------------


def test_cloudwatch_data_message() -> None:
    (item,) = parse_event(cloudwatch_event())
    assert item == LogEvents(
        log_group="/aws/lambda/checkout",
        log_stream="2024/05/01/[$LATEST]a1b2c3",
        events=[
            (
                "31953106606966983378809025079804211143289615424298221568",
                1432826855000,
                '{"eventVersion":"1.03","eventName":"DescribeTable"}',
            ),
            (
                "31953106606966983378809025079804211143289615424298221569",
                1432826855001,
                "plain line\twith tab",
            ),
        ],
        message_id=None,
    )


def test_cloudwatch_control_message_is_ignored() -> None:
    assert parse_event(cloudwatch_event("CONTROL_MESSAGE")) == []


def test_cloudwatch_via_sqs_keeps_message_id() -> None:
    (item,) = parse_sqs_record(sqs_record(cloudwatch_event(), message_id="m-cw"))
    assert isinstance(item, LogEvents)
    assert item.message_id == "m-cw"


def test_cloudwatch_data_not_base64_gzip() -> None:
    with pytest.raises(NotificationError, match="not base64 gzip"):
        parse_event({"awslogs": {"data": base64.b64encode(b"not gzip").decode()}})
    with pytest.raises(NotificationError, match="not base64 gzip"):
        parse_event({"awslogs": {"data": "***"}})


def test_cloudwatch_unknown_message_type() -> None:
    with pytest.raises(NotificationError, match="messageType 'SURPRISE'"):
        parse_event(cloudwatch_event("SURPRISE"))


def test_cloudwatch_bad_log_event() -> None:
    with pytest.raises(NotificationError, match="'timestamp' should be a number"):
        parse_event(cloudwatch_event(logEvents=[{"id": "1", "timestamp": "soon", "message": "x"}]))


# --- IBM COS via Code Engine ------------------------------------------------------------------


def test_code_engine_write() -> None:
    (item,) = parse_code_engine(ce_env(cos_data("logs/app.log.gz")))
    assert item == WorkItem(
        bucket="mybucket",
        key="logs/app.log.gz",
        size=16067,
        etag="db3c21eb1c5beb4be1975302bb2f3e3c",
        event="Object:Write",
        source="cos",
        message_id=None,
    )


def test_code_engine_delete_is_ignored() -> None:
    assert parse_code_engine(ce_env(cos_data(operation="Object:Delete"), action="delete")) == []


@pytest.mark.parametrize(
    "key",
    [CRN_KEY, "space and+plus/日志 %41.log", "a%2Fb.log"],
    ids=["crn", "spaces-plus-unicode", "encoded-slash"],
)
def test_code_engine_keys_are_plain(key: str) -> None:
    (item,) = parse_code_engine(ce_env(cos_data(key)))
    assert item.key == key


def test_code_engine_falls_back_to_notification_and_env() -> None:
    data = cos_data("from-notification.log")
    del data["bucket"], data["key"], data["operation"]
    (item,) = parse_code_engine(ce_env(data))
    assert (item.bucket, item.key, item.event) == (
        "mybucket",
        "from-notification.log",
        "Object:Write",
    )

    minimal = {"notification": {"object_length": "7"}}
    (item,) = parse_code_engine(ce_env(minimal, CE_SUBJECT="from subject.log"))
    assert (item.bucket, item.key, item.size, item.etag) == (
        "mybucket",
        "from subject.log",
        7,
        None,
    )


def test_code_engine_operation_missing_uses_ce_type() -> None:
    data = {"bucket": "mybucket", "key": "k.log", "notification": {}}
    assert parse_code_engine(ce_env(data, action="delete")) == []
    assert [i.key for i in parse_code_engine(ce_env(data, action="write"))] == ["k.log"]


def test_code_engine_without_ce_data() -> None:
    with pytest.raises(
        NotificationError, match=r"no CE_DATA.*CE_TYPE 'dev\.knative\.sources\.ping'"
    ):
        parse_code_engine({"CE_TYPE": "dev.knative.sources.ping"})


def test_code_engine_bad_ce_data() -> None:
    with pytest.raises(NotificationError, match=r"CE_DATA .* is not JSON"):
        parse_code_engine(ce_env("{not json"))
    with pytest.raises(NotificationError, match=r"unknown CE_DATA .*keys \['message'\]"):
        parse_code_engine(ce_env({"message": "cron tick"}))
    with pytest.raises(NotificationError, match="'bucket' should be a string"):
        parse_code_engine(ce_env({"key": "k.log", "operation": "Object:Write"}, CE_SOURCE=""))


def test_cos_body_through_parse_event() -> None:
    """A Code Engine *app* gets the same JSON as its HTTP body."""
    (item,) = parse_event(cos_data("app/x.log"))
    assert isinstance(item, WorkItem)
    assert (item.key, item.source, item.size) == ("app/x.log", "cos", 16067)


# --- unknown shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"foo": 1, "bar": 2}, "unknown notification: a JSON object with keys ['foo', 'bar']"),
        (42, "unknown notification: a number"),
        (None, "unknown notification: null"),
        ("", "notification is not JSON"),
        ("plain text", "notification is not JSON"),
        ([{"x": 1}], "unknown notification: a JSON object with keys ['x']"),
    ],
)
def test_unknown_shapes_name_what_arrived(payload: object, expected: str) -> None:
    with pytest.raises(NotificationError) as info:
        parse_event(payload)
    assert expected in str(info.value)


def test_unknown_shape_message_is_bounded() -> None:
    huge = {f"key_{i}_" + "x" * 500: "v" * 10_000 for i in range(1000)}
    with pytest.raises(NotificationError) as info:
        parse_event(huge)
    message = str(info.value)
    assert len(message) < 600
    assert "and 992 more" in message
    assert "vvvv" not in message


def test_unknown_record_source() -> None:
    event = {"Records": [{"eventSource": "aws:kinesis", "kinesis": {"data": "c2VjcmV0"}}]}
    with pytest.raises(NotificationError, match="eventSource 'aws:kinesis'") as info:
        parse_event(event)
    assert "c2VjcmV0" not in str(info.value)


def test_broken_s3_record_names_the_field() -> None:
    record = s3_record("a.log")
    del record["s3"]["bucket"]["name"]
    with pytest.raises(NotificationError, match="'name' should be a string, got null"):
        parse_event(s3_event(record))
    record = s3_record("a.log")
    for bad_size in ("big", "²", -1, True, 1.5):
        record["s3"]["object"]["size"] = bad_size
        with pytest.raises(NotificationError, match="size should be a whole number"):
            parse_event(s3_event(record))


def test_notification_error_is_a_value_error() -> None:
    assert issubclass(NotificationError, ValueError)
