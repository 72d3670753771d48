"""Generators: api-request lines (env names, rate, max, whole lines) and flow-log objects."""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from logferry.cli.main import cli
from logferry.codecs.formats.api_request import malformed_reason
from logferry.generate.api_requests import ApiRequestGenerator, generate


def test_lines_are_well_formed_and_realistic() -> None:
    lines = ApiRequestGenerator(customers=50, seed=1).lines(20000, time.time())
    assert all(line.endswith("\n") and malformed_reason(line) is None for line in lines)
    parts = [line.split() for line in lines]
    assert len({p[2] for p in parts}) == 50
    statuses = Counter(int(p[4]) // 100 for p in parts)
    assert statuses[2] / len(lines) > 0.85
    assert statuses[4] > 0
    assert statuses[5] > 0
    durations = sorted(float(p[5]) for p in parts)
    assert 0.05 < durations[len(durations) // 2] < 0.12  # lognormal around 80 ms
    assert durations[-1] > 5 * durations[len(durations) // 2]  # with a long tail


def test_seed_is_reproducible() -> None:
    a = ApiRequestGenerator(seed=9).lines(100, 1_800_000_000)
    assert a == ApiRequestGenerator(seed=9).lines(100, 1_800_000_000)


def test_env_names_are_read_and_options_win(tmp_path: Path) -> None:
    out = tmp_path / "api_requests.log"
    env = {
        "LOG_FILE_PATH": str(out),
        "LOG_BATCH_SIZE": "7",
        "LOG_INTERVAL_SECONDS": "0",
        "MAX_LOGS_TO_GENERATE": "30",
    }
    result = CliRunner().invoke(cli, ["generate", "api-requests", "--seed", "1"], env=env)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 30
    result = CliRunner().invoke(
        cli, ["generate", "api-requests", "--max", "5", "--out", str(tmp_path / "b.log")], env=env
    )
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "b.log").read_text().splitlines()) == 5
    assert len(out.read_text().splitlines()) == 30


def test_rate_paces_batches(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    t0 = time.monotonic()
    result = CliRunner().invoke(
        cli,
        ["generate", "api-requests", "--out", str(out), "--rate", "200", "--batch", "20",
         "--max", "100"],
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 100
    assert 0.35 < elapsed < 5  # 5 batches 0.1 s apart: the last one starts at 0.4 s


def test_lines_are_timed_now_in_utc(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    before = int(time.time())
    generate(out, batch=10, interval=0, max_lines=10)
    stamp = out.read_text().split("\n")[0][:19]
    t = int(time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) - time.timezone)
    assert before <= t <= int(time.time())


def test_backfill_from_start_does_not_sleep(tmp_path: Path) -> None:
    out = tmp_path / "a.log"
    result = CliRunner().invoke(
        cli,
        ["generate", "api-requests", "--out", str(out), "--start", "2026-01-01", "--batch",
         "1000", "--interval", "3600", "--max", "48000"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0].startswith("2026-01-01 00:00:00 ")
    assert lines[-1].startswith("2026-01-02 23:59:")


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    # One O_APPEND write per batch: two generators on one file leave only whole lines.
    # (A concurrent *reader* may still catch a write half done; the tail source keeps
    # an unterminated last line back until its newline arrives.)
    out = tmp_path / "a.log"
    writers = [
        threading.Thread(
            target=generate, args=(out,), kwargs={"batch": 500, "interval": 0, "max_lines": 50_000}
        )
        for _ in range(2)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    lines = out.read_text().split("\n")
    assert lines.pop() == ""
    assert len(lines) == 100_000
    assert all(malformed_reason(line) is None for line in lines)


def test_flowlogs_to_dir(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["generate", "flowlogs", "--to", str(tmp_path), "--format", "aws", "--objects", "3"]
    )
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("*.log.gz"))
    assert len(files) == 3
    assert "_vpcflowlogs_" in files[0].name
    assert gzip.decompress(files[0].read_bytes()).startswith(b"version account-id")


def test_flowlogs_to_s3(s3_endpoint: str, s3, bucket: str) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        cli,
        ["generate", "flowlogs", "--to", f"s3://{bucket}/demo", "--format", "ibm",
         "--objects", "4", "--endpoint-url", s3_endpoint],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 4
    assert all(k.startswith("demo/ibm_vpc_flowlogs_v1/") for k in keys)


@pytest.mark.parametrize("target", ["s3://", "gs://bucket/x"])
def test_flowlogs_bad_target_is_a_usage_error(target: str) -> None:
    result = CliRunner().invoke(cli, ["generate", "flowlogs", "--to", target])
    assert result.exit_code == 2
