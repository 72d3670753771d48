"""Options people expect from the AWS CLI, Vector and awslogs, run as real commands against
the moto server: --since/--until, --profile/--region, --follow on buckets, -v/-q/--log-format
after the subcommand, short flags that mean one thing."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import put_fixtures, run_cli
from tests.helpers import wait_for

VPC_KEY = (
    "AWSLogs/123456789012/vpcflowlogs/us-east-1/2024/05/01/"
    "123456789012_vpcflowlogs_us-east-1_fl-0abc_20240501T1205Z_d3adb33f.log"
)
TRAIL_KEY = (
    "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/02/"
    "123456789012_CloudTrail_us-east-1_20240502T0000Z_abc.json"
)


def shipped(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The --json summary of a finished command."""
    assert p.returncode == 0, p.stderr
    summary: dict[str, Any] = json.loads(p.stdout.splitlines()[-1])
    return summary


def output_lines(root: Path) -> int:
    """Lines the file sink wrote under ``root`` (finished files only)."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".partial")]
    return sum(len(p.read_bytes().splitlines()) for p in files)


@pytest.fixture()
def timed_bucket(s3: Any, bucket: str) -> str:
    """IBM flow logs of 2020-06-04 13h, an AWS flow log and a CloudTrail file of May 2024
    (times in their keys), and a plain object whose only time is its LastModified (now)."""
    put_fixtures(s3, bucket)
    s3.put_object(Bucket=bucket, Key=VPC_KEY, Body=b"2 123456789012 eni-1 ACCEPT OK\n")
    s3.put_object(Bucket=bucket, Key=TRAIL_KEY, Body=b'{"Records": []}\n')
    s3.put_object(Bucket=bucket, Key="app/now.log", Body=b"written now\n")
    return bucket


@pytest.mark.parametrize(
    ("window", "objects"),
    [
        # the IBM hour only: the other keys name other days, the plain object was written now
        (("--since", "2020-06-04T13:30:00Z", "--until", "2020-06-04T14:00:00Z"), 2),
        # the flow log stamped 12:05 (its events precede the stamp), not the CloudTrail file
        (("--since", "2024-05-01T12:00:00Z", "--until", "2024-05-01T12:10:00Z"), 1),
        # relative times: only the plain object is that recent
        (("--since", "1h ago"), 1),
        # a backfill of what predates a live subscription: everything but the plain object
        (("--until", "30m"), 4),
    ],
)
def test_ship_since_until(
    s3_endpoint: str, timed_bucket: str, tmp_path: Path, window: tuple[str, ...], objects: int
) -> None:
    p = run_cli(
        "ship", f"s3://{timed_bucket}", "--to", f"file://{tmp_path}/out", "--format", "lines",
        "--ledger", f"sqlite:///{tmp_path}/l.db", "--endpoint-url", s3_endpoint, "--json",
        *window,
    )  # fmt: skip
    assert shipped(p)["objects"] == objects


def test_pull_and_pipeline_since_until(s3_endpoint: str, timed_bucket: str, tmp_path: Path) -> None:
    p = run_cli(
        "pull", f"s3://{timed_bucket}", "--dest", str(tmp_path / "pulled"), "--format", "lines",
        "--since", "2h ago", "--endpoint-url", s3_endpoint, "--json",
    )  # fmt: skip
    assert shipped(p)["objects"] == 1
    assert any((tmp_path / "pulled").rglob("now.log*"))
    # a pipeline file's source: YAML reads the bare ISO times as timestamps
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/p.db\n"
        f"sinks: {{out: {{url: 'file://{tmp_path}/p'}}}}\n"
        "sources:\n"
        f"  flows:\n    url: s3://{timed_bucket}\n    endpoint_url: {s3_endpoint}\n"
        "    format: lines\n    sinks: [out]\n"
        "    since: 2020-06-04T13:00:00Z\n    until: 2020-06-05\n"
    )
    assert run_cli("validate", "-c", str(cfg)).returncode == 0
    assert shipped(run_cli("ship", "-c", str(cfg), "--json"))["objects"] == 2
    # bad times are usage errors that name the forms
    p = run_cli("ship", f"s3://{timed_bucket}", "--to", "-", "--since", "last tuesday")
    assert p.returncode == 2
    assert "2h ago" in p.stderr


# -- --profile / --region ----------------------------------------------------------------


@pytest.fixture()
def profile_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no AWS keys of its own and a profile ``moto`` (region us-west-2)."""
    config, credentials = tmp_path / "aws-config", tmp_path / "aws-credentials"
    config.write_text("[profile moto]\nregion = us-west-2\n")
    credentials.write_text(
        "[moto]\naws_access_key_id = testing-profile-key\n"
        "aws_secret_access_key = testing-profile-secret\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(credentials))
    return env


def run_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m logferry ARGS`` with exactly ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "logferry", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_profile_and_region(
    s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path, profile_env: dict[str, str]
) -> None:
    s3.put_object(Bucket=bucket, Key="app/a.log", Body=b"one\ntwo\n")
    common = ("--endpoint-url", s3_endpoint)
    p = run_env(profile_env, "ship", f"s3://{bucket}", "--to", f"file://{tmp_path}/out",
                "--ledger", f"sqlite:///{tmp_path}/l.db", "--json", "--profile", "moto",
                *common)  # fmt: skip
    assert shipped(p)["lines"] == 2
    p = run_env(profile_env, "pull", f"s3://{bucket}", "--dest", str(tmp_path / "pulled"),
                "--profile", "moto", "--json", *common)  # fmt: skip
    assert shipped(p)["objects"] == 1
    p = run_env(profile_env, "purge", f"s3://{bucket}", "--dry-run", "--profile", "moto", *common)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["app/a.log"]
    # no keys without the profile: the same command fails
    p = run_env(profile_env, "purge", f"s3://{bucket}", "--dry-run", *common)
    assert p.returncode != 0
    # an unknown profile is one line, exit 2, wherever AWS is called
    for args in (
        ("ship", f"s3://{bucket}", "--to", "-"),
        ("purge", f"s3://{bucket}", "--dry-run"),
        ("cloudwatch", "groups"),
    ):
        p = run_env(profile_env, *args, "--profile", "nope", *common)
        assert p.returncode == 2, p.stderr
        assert p.stderr.strip().count("\n") == 0
        assert "unknown AWS profile 'nope'" in p.stderr

    # CloudWatch Logs is regional: the profile's region (us-west-2) or --region picks it
    prefix = f"/test/{uuid.uuid4().hex[:8]}/"
    logs = boto3.client("logs", endpoint_url=s3_endpoint, region_name="us-west-2")
    logs.create_log_group(logGroupName=prefix + "app")
    logs.create_log_stream(logGroupName=prefix + "app", logStreamName="s")
    logs.put_log_events(
        logGroupName=prefix + "app",
        logStreamName="s",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": "hello west"}],
    )
    groups = ("cloudwatch", "groups", "--prefix", prefix, "--profile", "moto", *common)
    assert run_env(profile_env, *groups).stdout.split() == [prefix + "app"]
    assert run_env(profile_env, *groups, "--region", "us-east-1").stdout.split() == []
    p = run_env(profile_env, "ship", f"cloudwatch://{prefix}", "--to", f"file://{tmp_path}/cw",
                "--ledger", f"sqlite:///{tmp_path}/cw.db", "--json", "--profile", "moto",
                *common)  # fmt: skip
    assert shipped(p)["lines"] == 1


# -- --follow on a bucket ----------------------------------------------------------------


def test_follow_bucket_lists_every_interval(
    s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    s3.put_object(Bucket=bucket, Key="app/1.log", Body=b"a\nb\n")
    out, log = tmp_path / "out", (tmp_path / "stderr.txt").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "ship", f"s3://{bucket}", "--to", f"file://{out}",
         "--ledger", f"sqlite:///{tmp_path}/l.db", "--endpoint-url", s3_endpoint,
         "-f", "--interval", "0.2", "-v", "--json"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip

    def stderr() -> str:
        return (tmp_path / "stderr.txt").read_text()

    try:
        wait_for(lambda: output_lines(out) == 2, timeout=30, message=stderr)
        s3.put_object(Bucket=bucket, Key="app/2.log", Body=b"c\n")
        wait_for(lambda: output_lines(out) == 3, timeout=30, message=stderr)
        # it keeps listing (the -v story says so) without a summary for empty cycles
        listed = stderr().count("listed s3://")
        wait_for(lambda: stderr().count("listed s3://") >= listed + 3, timeout=30)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert proc.returncode == 0, stderr()
    summaries = [line for line in stderr().splitlines() if line.startswith("shipped ")]
    assert [s.split(",")[0] for s in summaries] == [
        "shipped 1 object",
        "shipped 1 object",
        "shipped 2 objects",
    ]
    final = json.loads(stdout.splitlines()[-1])
    assert (final["objects"], final["lines"], final["interrupted"]) == (2, 3, False)


# -- -v, -q and --log-format after the subcommand ---------------------------------------


def test_verbose_quiet_and_log_format(
    s3_endpoint: str, s3: Any, bucket: str, tmp_path: Path, mezmo: Any
) -> None:
    s3.put_object(Bucket=bucket, Key="app/a.log", Body=b"one\ntwo\n")
    s3.put_object(Bucket=bucket, Key="app/b.log", Body=b"three\n")

    def ship(ledger: str, *flags: str, to: str = f"file://{tmp_path}/out") -> str:
        p = run_cli("ship", f"s3://{bucket}", "--to", to, "--endpoint-url", s3_endpoint,
                    "--ledger", f"sqlite:///{tmp_path}/{ledger}.db", *flags)  # fmt: skip
        assert p.returncode == 0, p.stderr
        return p.stderr

    story = ship("v", "-v")
    for line in ("listed s3://", "claimed app/a.log", "shipped app/a.log: 2 lines"):
        assert line in story
    assert "HTTP Request" not in ship("v1", "-v", to=mezmo.url)
    assert "HTTP Request: POST" in ship("vv", "-vv", to=mezmo.url)
    # before and after the subcommand add up
    p = run_cli("-v", "ship", f"s3://{bucket}", "--to", mezmo.url, "--endpoint-url", s3_endpoint,
                "--ledger", f"sqlite:///{tmp_path}/vv2.db", "-v")  # fmt: skip
    assert "HTTP Request: POST" in p.stderr

    logged = ship("json", "-v", "--log-format", "json")
    docs = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert any(d["level"] == "info" and d["message"].startswith("claimed") for d in docs)
    assert all({"time", "level", "logger", "message"} <= d.keys() for d in docs)
    assert " INFO logferry:" not in logged

    # -q before or after: nothing on stderr
    assert ship("q", "-q", "-v") == ""
    p = run_cli("-q", "ship", f"s3://{bucket}", "--to", f"file://{tmp_path}/out2",
                "--endpoint-url", s3_endpoint, "--ledger", f"sqlite:///{tmp_path}/q2.db")  # fmt: skip
    assert (p.returncode, p.stderr) == (0, "")
    p = run_cli("status", "--ledger", f"sqlite:///{tmp_path}/q2.db", "-v")
    assert p.returncode == 0, p.stderr


def test_short_flags_mean_one_thing(s3_endpoint: str, tmp_path: Path) -> None:
    group = f"/test/{uuid.uuid4().hex[:8]}/short"
    logs = boto3.client("logs", endpoint_url=s3_endpoint, region_name="us-east-1")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now - 1000, "message": '{"level": "info", "msg": "first"}'}],
    )
    env = {"AWS_ENDPOINT_URL": s3_endpoint}
    # -q is quiet (not --query any more); --query keeps its long name
    p = run_cli("cloudwatch", "get", group, "-q", "--no-stream", env=env)
    assert (p.returncode, p.stdout.strip()) == (0, '{"level": "info", "msg": "first"}'), p.stderr
    p = run_cli("cloudwatch", "get", group, "--query", "msg", "--no-stream", env=env)
    assert p.stdout.strip() == "first"
    # -f is follow (the filter pattern has its long name only)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "cloudwatch", "get", group, "-f", "--no-stream",
         "--poll-interval", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env},
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        logs.put_log_events(
            logGroupName=group,
            logStreamName="s",
            logEvents=[{"timestamp": int(time.time() * 1000), "message": "second"}],
        )
        wait_for(lambda: len(lines) >= 2, timeout=30, message="the followed event")
    finally:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()
    assert [line.strip() for line in lines] == ['{"level": "info", "msg": "first"}', "second"]
    help_text = run_cli("cloudwatch", "get", "--help").stdout
    assert "-f, -w, --follow" in help_text and "-q, --quiet" in help_text
    assert "-f, --filter-pattern" not in help_text and "-q, --query" not in help_text
