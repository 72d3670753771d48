"""Hostile notifications: a bad message fails alone, and only allowed buckets are read.

Before the fix one SQS message of 100,000 nested brackets raised RecursionError and failed
every message of the batch on every redelivery, a deep ``CE_DATA`` ended ``logferry job``
with a traceback, and an event naming any bucket made the function read that bucket.
"""

from __future__ import annotations

import gzip
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from logferry.serverless import aws_lambda
from tests.conftest import run_cli

DEEP = "[" * 100_000 + "]" * 100_000
# An environment variable holds 128 KiB at most (Linux): CE_DATA bombs stay below.
DEEP_ENV = "[" * 60_000 + "]" * 60_000


def s3_event(bucket: str, key: str) -> dict[str, Any]:
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket},
        "object": {"key": urllib.parse.quote_plus(key), "size": 1, "eTag": "x"}}}]}  # fmt: skip


def sqs(message_id: str, body: object) -> dict[str, Any]:
    text = body if isinstance(body, str) else json.dumps(body)
    return {"messageId": message_id, "eventSource": "aws:sqs", "body": text}


def shipped(out: Path) -> list[str]:
    return sorted(
        json.loads(line)["line"]
        for p in out.rglob("*.jsonl")
        for line in p.read_text().splitlines()
    )


def failed_ids(result: dict[str, Any]) -> list[str]:
    return sorted(f["itemIdentifier"] for f in result["batchItemFailures"])


@pytest.fixture()
def env(monkeypatch, s3, s3_endpoint, bucket, tmp_path) -> Path:  # type: ignore[no-untyped-def]
    """Lambda's environment: files as the sink, a ledger in tmp, one good object in ``bucket``."""
    s3.put_object(Bucket=bucket, Key="logs/good.log.gz", Body=gzip.compress(b"good line\n"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("LOGFERRY_SINKS", f"file://{tmp_path / 'out'}")
    monkeypatch.setenv("LOGFERRY_LEDGER", f"sqlite:///{tmp_path / 'ledger.db'}")
    for name in ("LOGFERRY_BUCKETS", "LOGFERRY_SOURCE", "COS_BUCKET", "LOGFERRY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "out"


# --- one message fails alone ------------------------------------------------------------------


def test_deeply_nested_messages_fail_alone(env: Path, bucket: str, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LOGFERRY_BUCKETS", bucket)
    deep_envelope = json.dumps(s3_event(bucket, "logs/good.log.gz"))
    for _ in range(18):  # SNS in SNS in SNS…: each level a JSON string inside the last
        deep_envelope = json.dumps({"Type": "Notification", "Message": deep_envelope})
    event = {"Records": [
        sqs("m-deep", DEEP),                          # RecursionError in json.loads before
        sqs("m-arrays", "[" * 900 + "]" * 900),       # parses, then recursed in dispatch
        sqs("m-envelopes", deep_envelope),
        sqs("m-good", s3_event(bucket, "logs/good.log.gz")),
    ]}  # fmt: skip
    for _ in range(2):  # the redelivery: the same answer, the good line still once
        with caplog.at_level(logging.ERROR, "logferry"):
            result = aws_lambda.handler(event)
        assert failed_ids(result) == ["m-arrays", "m-deep", "m-envelopes"]
        assert shipped(env) == ["good line"]
    assert "nested too deeply to parse" in caplog.text and "(more than 16 levels)" in caplog.text
    assert "RecursionError" not in caplog.text


def test_any_error_parsing_a_message_fails_that_message_alone(  # type: ignore[no-untyped-def]
    env: Path, bucket: str, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("LOGFERRY_BUCKETS", bucket)
    real = aws_lambda.parse_sqs_record

    def parse(record: dict[str, Any]) -> Any:
        if record["messageId"] == "m-boom":
            raise MemoryError("a body too big to parse")
        return real(record)

    monkeypatch.setattr(aws_lambda, "parse_sqs_record", parse)
    event = {"Records": [sqs("m-boom", "{}"), sqs("m-good", s3_event(bucket, "logs/good.log.gz"))]}
    with caplog.at_level(logging.ERROR, "logferry"):
        result = aws_lambda.handler(event)
    assert failed_ids(result) == ["m-boom"]
    assert shipped(env) == ["good line"]
    assert "m-boom: MemoryError: a body too big to parse" in caplog.text


def test_a_deep_direct_event_is_a_one_line_error(env: Path) -> None:
    with pytest.raises(ValueError, match="nested too deeply") as info:
        aws_lambda.handler(json.loads("[" * 500 + "]" * 500))  # parsed by Lambda, not by us
    assert "\n" not in str(info.value)


# --- which buckets are shipped ----------------------------------------------------------------


def test_default_ships_no_bucket_that_nothing_configured(  # type: ignore[no-untyped-def]
    env: Path, bucket: str, caplog
) -> None:
    event = {"Records": [sqs("m1", s3_event(bucket, "logs/good.log.gz"))]}
    with caplog.at_level(logging.ERROR, "logferry"):
        result = aws_lambda.handler(event)
    assert failed_ids(result) == ["m1"] and shipped(env) == []
    assert f"bucket {bucket!r} is not one this function ships" in caplog.text
    assert "LOGFERRY_BUCKETS" in caplog.text and "deleted after listing" not in caplog.text


def test_allow_list_refuses_other_buckets_and_ships_the_rest(  # type: ignore[no-untyped-def]
    env: Path, s3, bucket: str, monkeypatch, caplog
) -> None:
    other = f"{bucket}-other"
    s3.create_bucket(Bucket=other)
    s3.put_object(Bucket=other, Key="secret.log.gz", Body=gzip.compress(b"not for us\n"))
    monkeypatch.setenv("LOGFERRY_BUCKETS", f" {bucket} , ")
    event = {"Records": [
        sqs("m-other", s3_event(other, "secret.log.gz")),
        sqs("m-good", s3_event(bucket, "logs/good.log.gz")),
    ]}  # fmt: skip
    with caplog.at_level(logging.ERROR, "logferry"):
        result = aws_lambda.handler(event)
    assert failed_ids(result) == ["m-other"]
    assert shipped(env) == ["good line"]
    assert f"bucket {other!r} is not in LOGFERRY_BUCKETS ({bucket})" in caplog.text
    # `*` opts in to any bucket explicitly
    monkeypatch.setenv("LOGFERRY_BUCKETS", "*")
    assert failed_ids(aws_lambda.handler({"Records": [event["Records"][0]]})) == []
    assert shipped(env) == ["good line", "not for us"]


def test_the_configured_source_is_the_allow_list_with_its_prefix(  # type: ignore[no-untyped-def]
    env: Path, s3, bucket: str, monkeypatch, caplog
) -> None:
    s3.put_object(Bucket=bucket, Key="private/x.log.gz", Body=gzip.compress(b"private\n"))
    monkeypatch.setenv("LOGFERRY_SOURCE", f"s3://{bucket}/logs/")
    event = {"Records": [
        sqs("m-private", s3_event(bucket, "private/x.log.gz")),
        sqs("m-other", s3_event("someone-elses-bucket", "x.log.gz")),
        sqs("m-good", s3_event(bucket, "logs/good.log.gz")),
    ]}  # fmt: skip
    with caplog.at_level(logging.ERROR, "logferry"):
        result = aws_lambda.handler(event)
    assert failed_ids(result) == ["m-other", "m-private"]
    assert shipped(env) == ["good line"]
    assert "outside the source's prefix 'logs/'" in caplog.text
    assert f"'someone-elses-bucket' is not one this function ships ({bucket})" in caplog.text


# --- logferry job and CE_DATA -----------------------------------------------------------------


@pytest.fixture()
def job_env(s3_endpoint: str, bucket: str, tmp_path: Path) -> dict[str, str]:
    return {
        "COS_ENDPOINT": s3_endpoint,
        "COS_BUCKET": bucket,
        "LOGFERRY_SINKS": f"file://{tmp_path / 'out'}",
        "LOGFERRY_LEDGER": f"sqlite:///{tmp_path / 'job.db'}",
        "CE_TYPE": "com.ibm.cloud.cos.document.write",
    }


@pytest.mark.parametrize(
    "ce_data",
    [
        DEEP_ENV,
        '{"bucket": ' + DEEP_ENV + ', "operation": "Object:Write"}',
        '{"bucket": ' + "[" * 500 + "]" * 500 + ', "key": "k", "operation": "Object:Write"}',
    ],
    ids=["deep-array", "deep-field", "nested-bucket"],
)
def test_job_with_deep_ce_data_is_one_line_exit_2(job_env: dict[str, str], ce_data: str) -> None:
    p = run_cli("job", "--no-catchup", env={**job_env, "CE_DATA": ce_data})
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and "RecursionError" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and p.stderr.startswith("error: CE_DATA")


def test_job_refuses_ce_data_for_another_bucket(  # type: ignore[no-untyped-def]
    job_env: dict[str, str], s3, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="a.log.gz", Body=gzip.compress(b"ours\n"))
    ce = {"bucket": "another-bucket", "key": "a.log.gz", "operation": "Object:Write",
          "notification": {"bucket_name": "another-bucket", "object_name": "a.log.gz"}}  # fmt: skip
    p = run_cli("job", "--no-catchup", env={**job_env, "CE_DATA": json.dumps(ce)})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "'another-bucket' is not one this function ships" in p.stderr
    assert "deleted after listing" not in p.stderr
    ce = {**ce, "bucket": bucket, "notification": {**ce["notification"], "bucket_name": bucket}}
    ok = run_cli("job", "--no-catchup", env={**job_env, "CE_DATA": json.dumps(ce)})
    assert ok.returncode == 0, ok.stderr
    assert shipped(tmp_path / "out") == ["ours"]


def test_a_cloudwatch_gzip_bomb_in_a_message_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """A queue message is about 1 MB; its awslogs.data may inflate a thousandfold. Before the
    fix a 1 GB bomb was inflated whole by the notification parser (a worker, a Lambda)."""
    import subprocess
    import sys
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(1024)) + packer.flush()
    assert len(bomb) < 1_100_000  # it fits in one SQS message
    body = tmp_path / "bomb.json"
    import base64

    body.write_text(json.dumps({"awslogs": {"data": base64.b64encode(bomb).decode()}}))
    probe = (
        "import json, sys\n"
        "from logferry.notifications import NotificationError, parse_event\n"
        "try:\n"
        "    parse_event(json.loads(open(sys.argv[1]).read()))\n"
        "    print('parsed')\n"
        "except NotificationError as exc:\n"
        "    print(exc)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and
        # exec, so under a big test runner it reports the runner's size.
        "print(next(int(l.split()[1]) // 1024 for l in open('/proc/self/status')"
        " if l.startswith('VmHWM:')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(body)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    said, peak_mb = out.stdout.strip().splitlines()
    assert "inflates to over 64 MiB: refused" in said
    assert int(peak_mb) < 200
