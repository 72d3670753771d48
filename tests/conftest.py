"""Shared fixtures: a real S3 endpoint (moto server mode on loopback), sample data helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_fixtures() -> Path:
    """The shared fixtures: $LOGFERRY_FIXTURES, or ``shared/fixtures`` beside the checkout."""
    candidates = (
        [Path(os.environ["LOGFERRY_FIXTURES"])] if os.environ.get("LOGFERRY_FIXTURES") else []
    )
    candidates += [p / "shared" / "fixtures" for p in REPO.parents]
    for path in candidates:
        if (path / "ibm-vpc-flowlogs").is_dir():
            return path
    return REPO.parent / "shared" / "fixtures"  # tests using it fail naming this path


FIXTURES = _find_fixtures()
IBM_FIXTURES = FIXTURES / "ibm-vpc-flowlogs"

# Credentials for the loopback moto server only; real ones must never be needed by tests.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing-key-id",
    "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session", autouse=True)
def _aws_test_env() -> Iterator[None]:
    """Point every boto3 client at fake credentials; never at a real account."""
    old = {k: os.environ.get(k) for k in TEST_ENV}
    os.environ.update(TEST_ENV)
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Default ledger and store paths in a temp dir: tests never touch the user's own (or
    one a newer checkout migrated), and runs in parallel checkouts do not share them."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 HTTP endpoint: moto in server mode on a free loopback port."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - a missing dev dependency must fail loudly
        pytest.fail("moto server is missing: pip install -e '.[dev]'")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    """A boto3 S3 client talking to the loopback endpoint."""
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture()
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    """A fresh, empty bucket for one test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture()
def ingest_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The ingestion key the test server expects, exported as the CLI reads it."""
    key = "test-ingestion-key-" + uuid.uuid4().hex
    monkeypatch.setenv("LOGDNA_INGESTION_KEY", key)
    return key


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m logferry ARGS`` in a real process and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "logferry", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture()
def mezmo(ingest_key: str):  # type: ignore[no-untyped-def]
    """A Mezmo-compatible ingest server on loopback that checks auth, params and schema."""
    from logferry.testing.mezmo_server import MezmoServer

    with MezmoServer(ingest_key) as server:
        yield server


def put_fixtures(s3, bucket: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Upload the real IBM objects under IBM-style keys; return {name: key}."""
    base = (
        "ibm_vpc_flowlogs_v1/account=713c783d9a507a53135fe6793c37cc74/region=us-south/"
        "vpc-id=crn%3Av1%3Abluemix/endpoint-type=vnics/record-type=ingress/"
        "year=2020/month=06/day=04/hour=13/stream-id=20200604T134239Z/"
    )
    keys = {"911": base + "00000911.gz", "2630": base + "00002630.gz"}
    s3.put_object(Bucket=bucket, Key=keys["911"], Body=(IBM_FIXTURES / "00000911.gz").read_bytes())
    s3.put_object(
        Bucket=bucket, Key=keys["2630"], Body=(IBM_FIXTURES / "00002630.json").read_bytes()
    )
    return keys


# Work queues under test (SQS on the moto server above, NATS JetStream on 127.0.0.1:4222),
# for the queue tests and the enqueue tests alike.
from tests.queues.harness import big_bucket, nats_harness, sqs_harness  # noqa: E402, F401
