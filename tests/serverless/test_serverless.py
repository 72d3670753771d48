"""Serverless entry points against moto S3 and the ingest server: Code Engine job, Lambda."""

from __future__ import annotations

import collections
import gzip
import json
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from logferry.serverless import aws_lambda
from tests.conftest import run_cli


def put_lines(s3, bucket: str, key: str, tag: str, n: int) -> None:  # type: ignore[no-untyped-def]
    body = b"\n".join(orjson.dumps({"tag": tag, "i": i}) for i in range(n)) + b"\n"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))


def received(mezmo) -> collections.Counter[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return collections.Counter(
        (r["tag"], r["i"]) for r in (orjson.loads(x["line"]) for x in mezmo.lines)
    )


def job_env(s3_endpoint: str, bucket: str, mezmo, tmp_path: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        # the names the original IBM job used
        "COS_ENDPOINT": s3_endpoint,
        "COS_BUCKET": bucket,
        "COS_HMAC_ACCESS_KEY_ID": "hmac-id",
        "COS_HMAC_SECRET_ACCESS_KEY": "hmac-secret",
        "LOGDNA_ENDPOINT": mezmo.endpoint,
        "LOGFERRY_LEDGER": f"sqlite:///{tmp_path}/job.db",
    }


def test_code_engine_job_ships_ce_data_then_catches_up(
    s3, bucket, s3_endpoint, mezmo, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    for n in range(5):
        put_lines(s3, bucket, f"logs/{n}.ndjson.gz", f"o{n}", 50)
    env = job_env(s3_endpoint, bucket, mezmo, tmp_path)
    ce_data = {"bucket": bucket, "key": "logs/3.ndjson.gz", "operation": "Object:Write",
               "notification": {"bucket_name": bucket, "object_name": "logs/3.ndjson.gz",
                                "object_length": "100", "event_type": "Object:Write"}}  # fmt: skip
    env.update(CE_DATA=json.dumps(ce_data), CE_TYPE="com.ibm.cloud.cos.document.write")
    p = run_cli("job", "--json", env=env)
    assert p.returncode == 0, p.stderr
    counts = received(mezmo)
    assert len(counts) == 250
    assert max(counts.values()) == 1
    # the notified object went first, then the catch-up
    assert orjson.loads(mezmo.lines[0]["line"])["tag"] == "o3"
    # a notification for an object that is not there: exit non-zero so the platform retries
    env["CE_DATA"] = json.dumps({**ce_data, "key": "logs/missing.gz", "notification": {}})
    p = run_cli("job", "--no-catchup", env=env)
    assert p.returncode == 1
    assert "logs/missing.gz" in p.stderr


def test_array_job_covers_the_bucket_exactly_once(s3, bucket, s3_endpoint, mezmo, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for n in range(30):
        put_lines(s3, bucket, f"a/{n:02d}.ndjson.gz", f"o{n}", 10)
    env = job_env(s3_endpoint, bucket, mezmo, tmp_path)
    shipped = []
    for index in range(3):
        p = run_cli("job", "--json", env={**env, "JOB_INDEX": str(index), "JOB_ARRAY_SIZE": "3"})
        assert p.returncode == 0, p.stderr
        shipped.append(json.loads(p.stdout.splitlines()[-1])["objects"])
    assert sum(shipped) == 30
    assert all(n > 0 for n in shipped)
    counts = received(mezmo)
    assert len(counts) == 300
    assert max(counts.values()) == 1
    bad = run_cli("job", env={**env, "JOB_INDEX": "3", "JOB_ARRAY_SIZE": "3"})
    assert bad.returncode == 2
    assert "JOB_INDEX" in bad.stderr


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket},
        "object": {"key": urllib.parse.quote_plus(key), "size": 1, "eTag": "x"}}}]}  # fmt: skip


def sqs(message_id: str, body: object) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": message_id, "eventSource": "aws:sqs", "body": text}


class Context:
    def __init__(self, millis: float) -> None:
        self.deadline = time.monotonic() + millis / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self.deadline - time.monotonic()) * 1000)


@pytest.fixture()
def lambda_env(monkeypatch, s3_endpoint, mezmo, tmp_path, bucket) -> Path:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("LOGFERRY_BUCKETS", bucket)
    monkeypatch.setenv("LOGFERRY_SINKS", mezmo.url)
    monkeypatch.setenv("LOGFERRY_LEDGER", f"sqlite:///{tmp_path}/lambda.db")
    return tmp_path / "lambda.db"


def test_lambda_sqs_partial_batch_failures(s3, bucket, mezmo, lambda_env) -> None:  # type: ignore[no-untyped-def]
    odd_key = "dir/with space+plus/ünï.ndjson.gz"
    put_lines(s3, bucket, "good.ndjson.gz", "good", 20)
    put_lines(s3, bucket, odd_key, "odd", 20)
    sns = {
        "Type": "Notification",
        "MessageId": "n1",
        "Message": json.dumps(s3_event(bucket, odd_key)),
    }
    event = {"Records": [
        sqs("m-good", s3_event(bucket, "good.ndjson.gz")),
        sqs("m-garbage", "this is not json"),
        sqs("m-missing", s3_event(bucket, "missing.gz")),
        sqs("m-sns", sns),
        sqs("m-test", {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": bucket}),
    ]}  # fmt: skip
    result = aws_lambda.handler(event, Context(60_000))
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == [
        "m-garbage",
        "m-missing",
    ]
    counts = received(mezmo)
    assert len(counts) == 40
    assert max(counts.values()) == 1
    # a redelivery of the good messages ships nothing twice
    aws_lambda.handler(
        {"Records": [sqs("m-good", s3_event(bucket, "good.ndjson.gz"))]}, Context(60_000)
    )
    assert max(received(mezmo).values()) == 1


def test_lambda_direct_s3_event_raises_on_failure(s3, bucket, mezmo, lambda_env) -> None:  # type: ignore[no-untyped-def]
    put_lines(s3, bucket, "a.ndjson.gz", "a", 5)
    assert aws_lambda.handler(s3_event(bucket, "a.ndjson.gz"), Context(60_000))["shipped"] == 1
    with pytest.raises(aws_lambda.ShipFailed, match=r"missing\.gz"):
        aws_lambda.handler(s3_event(bucket, "missing.gz"), Context(60_000))


def test_lambda_cloudwatch_subscription(mezmo, lambda_env) -> None:  # type: ignore[no-untyped-def]
    data = {"messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "/app", "logStream": "s1",
            "subscriptionFilters": ["f"], "logEvents": [
                {"id": "e1", "timestamp": 1700000000000, "message": "hello"},
                {"id": "e2", "timestamp": 1700000001000, "message": "world"}]}  # fmt: skip
    import base64

    payload = {
        "awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}
    }
    aws_lambda.handler(payload, Context(60_000))
    assert [(x["line"], x["timestamp"]) for x in mezmo.lines] == [
        ("hello", 1700000000000), ("world", 1700000001000)]  # fmt: skip


def test_lambda_deadline_checkpoints_and_redelivery_resumes(
    s3, bucket, mezmo, lambda_env, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    put_lines(s3, bucket, "big.ndjson.gz", "big", 20_000)
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        f"ledger: sqlite:///{lambda_env}\nbatch_bytes: 4096\n"
        f"sinks:\n  m: {{url: '{mezmo.url}'}}\n"
        f"sources:\n  b: {{url: 's3://{bucket}', sinks: [m]}}\n"
    )
    monkeypatch.setenv("LOGFERRY_CONFIG", str(config))
    monkeypatch.setenv("LOGFERRY_DEADLINE_MARGIN_MS", "300")
    mezmo.delay = 0.02
    event = {"Records": [sqs("m-big", s3_event(bucket, "big.ndjson.gz"))]}
    began = time.monotonic()
    first = aws_lambda.handler(event, Context(1_500))
    assert time.monotonic() - began < 3
    assert first["batchItemFailures"] == [{"itemIdentifier": "m-big"}]
    with sqlite3.connect(lambda_env) as conn:
        status, position = conn.execute("SELECT status, position FROM objects").fetchone()
    assert status == "pending"
    assert 0 < position < 20_000
    assert len(mezmo.lines) == position  # acknowledged == checkpointed
    mezmo.delay = 0
    second = aws_lambda.handler(event, Context(120_000))
    assert second["batchItemFailures"] == []
    counts = received(mezmo)
    assert len(counts) == 20_000
    assert max(counts.values()) == 1  # resumed, nothing twice
