"""End to end through the library and the CLI: a real S3 endpoint, real sinks."""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path

import orjson
import pytest

from logferry.engine import Progress
from logferry.errors import ConfigError
from logferry.ledger import SQLiteLedger, Status
from logferry.records import ObjectInfo
from logferry.sources import LocalDirSource
from tests.conftest import put_fixtures, run_cli
from tests.shipping import ship


def read_jsonl(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(x) for x in path.read_bytes().splitlines()]


def all_out_lines(out: Path) -> list[dict]:  # type: ignore[type-arg]
    rows = []
    for p in sorted(out.rglob("*.jsonl")):
        rows.extend(read_jsonl(p))
    return rows


def ndjson_object(n: int, start: int = 0) -> bytes:
    rows = [
        orjson.dumps({"timestamp": f"2026-01-01T00:{(i // 60) % 60:02d}:{i % 60:02d}Z", "n": i})
        for i in range(start, start + n)
    ]
    return gzip.compress(b"\n".join(rows) + b"\n")


def test_ibm_fixtures_to_files(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = put_fixtures(s3, bucket)
    out = tmp_path / "out"
    result = ship(
        f"s3://{bucket}/",
        to=f"file://{out}",
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
    )
    assert result.ok
    assert result.objects == 2
    assert result.lines == 2
    from logferry.sinks.files import FileSink

    rows = read_jsonl(FileSink(out).path_for(keys["911"]))
    assert len(rows) == 2  # number_of_flow_logs says 1: the list wins
    first, second = (orjson.loads(r["line"]) for r in rows)
    assert first["key"] == keys["911"]
    assert "flow_logs" not in first
    assert "number_of_flow_logs" not in first
    assert first["vpc_crn"].startswith("crn:v1")
    assert rows[0]["timestamp"] == "2020-06-04T13:43:10.000Z"  # start_time
    assert (
        rows[1]["timestamp"] == "2020-06-04T13:42:39.000Z"
    )  # empty start_time: capture_start_time
    assert second["start_time"] == ""
    # the object with no flows ships nothing and is done, not an error
    assert FileSink(out).path_for(keys["2630"]).read_bytes() == b""
    led = SQLiteLedger(tmp_path / "l.db")
    assert {e.status for e in led.entries()} == {Status.DONE}
    led.close()
    # a second run ships nothing new
    again = ship(
        f"s3://{bucket}/",
        to=f"file://{out}",
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
    )
    assert again.ok
    assert again.objects == 0
    assert again.lines == 0


def test_prefix_and_oldest_first(tmp_path: Path) -> None:
    # LastModified decides the order, then the key; keys sort the other way round here
    src = tmp_path / "bucket"
    (src / "app").mkdir(parents=True)
    (src / "other").mkdir()
    for i, key in enumerate(["app/c.log", "app/b.log", "app/a.log", "app/a2.log", "other/x.log"]):
        path = src / key
        path.write_text(f"line {i}\n")
        os.utime(path, ns=(1_700_000_000_000_000_000 + min(i, 2) * 10**9,) * 2)
    order: list[str] = []

    class Record(Progress):
        def object_started(self, obj: ObjectInfo) -> None:
            order.append(obj.key)

    result = ship(
        LocalDirSource(src, prefix="app/"),
        to=str(tmp_path / "out"),
        ledger=str(tmp_path / "l.db"),
        workers=1,
        progress=Record(),
    )
    assert result.objects == 4
    assert order == ["app/c.log", "app/b.log", "app/a.log", "app/a2.log"]


def test_objects_arriving_during_catchup_are_shipped(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="a.ndjson", Body=ndjson_object(10))
    passes = []

    class Arrive(Progress):
        def start_pass(self, objects: int, nbytes: int) -> None:
            passes.append(objects)
            if len(passes) == 1:
                s3.put_object(Bucket=bucket, Key="b.ndjson", Body=ndjson_object(5))

    result = ship(
        f"s3://{bucket}",
        to=str(tmp_path / "out"),
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
        progress=Arrive(),
    )
    assert passes == [1, 1]
    assert result.objects == 2
    assert result.lines == 15


def test_modes_key_latest_all(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"k{i}.ndjson", Body=ndjson_object(3, i * 3))
    common = {
        "to": str(tmp_path / "out"),
        "ledger": str(tmp_path / "l.db"),
        "endpoint_url": s3_endpoint,
    }
    src = f"s3://{bucket}"
    r = ship(src, key="k2.ndjson", **common)
    assert (r.objects, r.lines) == (1, 3)
    r = ship(src, key="k2.ndjson", **common)  # already done: skipped, not re-sent
    assert (r.objects, r.skipped) == (0, 1)
    r = ship(src, latest=2, **common)  # the two newest not yet done
    assert r.objects == 2
    led = SQLiteLedger(tmp_path / "l.db")
    done = sorted(e.key for e in led.entries(status=Status.DONE))
    led.close()
    assert done == ["k2.ndjson", "k3.ndjson", "k4.ndjson"]
    r = ship(src, **common)  # catchup ships the rest, never k2 again
    assert r.objects == 2
    assert r.lines == 6
    r = ship(src, all=True, **common)  # deliberate re-send of everything
    assert r.objects == 5
    assert r.lines == 15
    # the file sink replaced its files: still exactly one copy of every line
    assert sorted(orjson.loads(x["line"])["n"] for x in all_out_lines(tmp_path / "out")) == list(
        range(15)
    )
    with pytest.raises(ConfigError):
        ship(src, key="missing", latest=2, **common)


def test_missing_key_fails_cleanly(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = ship(
        f"s3://{bucket}",
        key="nope.log",
        to=str(tmp_path / "o"),
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
    )
    assert not r.ok
    assert r.failed[0].key == "nope.log"
    assert "does not exist" in r.failed[0].error


def test_bad_inputs_fail_alone(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = gzip.compress(b"ok 1\nok 2\n")
    s3.put_object(Bucket=bucket, Key="good.log.gz", Body=good)
    s3.put_object(
        Bucket=bucket, Key="truncated.log.gz", Body=gzip.compress(b"x" * 5000 + b"\n")[:-10]
    )
    corrupt = bytearray(gzip.compress(b"hello world\n" * 1000))
    corrupt[20:40] = b"\xff" * 20
    s3.put_object(Bucket=bucket, Key="corrupt.log.gz", Body=bytes(corrupt))
    s3.put_object(
        Bucket=bucket, Key="ibm_vpc_flowlogs_v1/bad/00000001.gz", Body=gzip.compress(b"{not json")
    )
    s3.put_object(Bucket=bucket, Key="empty.log", Body=b"")
    s3.put_object(Bucket=bucket, Key="latin1.log", Body="caf\xe9 ok\n".encode("latin-1"))
    s3.put_object(Bucket=bucket, Key="vanishing.log", Body=b"soon gone\n")

    class Delete(Progress):
        def start_pass(self, objects: int, nbytes: int) -> None:
            s3.delete_object(Bucket=bucket, Key="vanishing.log")

    r = ship(
        f"s3://{bucket}",
        to=str(tmp_path / "out"),
        ledger=str(tmp_path / "l.db"),
        endpoint_url=s3_endpoint,
        progress=Delete(),
        workers=1,
    )
    failed = {f.key: f.error for f in r.failed}
    assert set(failed) == {
        "truncated.log.gz",
        "corrupt.log.gz",
        "ibm_vpc_flowlogs_v1/bad/00000001.gz",
        "vanishing.log",
    }
    for error in failed.values():
        assert "\n" not in error
        assert error
    assert "does not exist" in failed["vanishing.log"]
    assert r.objects == 3  # good, empty, latin1
    lines = [x["line"] for x in all_out_lines(tmp_path / "out")]
    assert "ok 1" in lines
    assert "caf\ufffd ok" in lines
    led = SQLiteLedger(tmp_path / "l.db")
    assert {e.key for e in led.entries(status=Status.FAILED)} == set(failed)
    led.close()


def test_cli_exit_codes_and_json(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="a.log", Body=b"one\ntwo\n")
    env = {"AWS_ENDPOINT_URL": s3_endpoint}
    led = f"sqlite:///{tmp_path}/l.db"
    p = run_cli(
        "ship", f"s3://{bucket}", "--to", str(tmp_path / "o"), "--ledger", led, "--json", env=env
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["objects"] == 1
    assert summary["lines"] == 2
    assert summary["failed"] == []
    assert (
        "listing found 1 object to ship" in p.stderr
    )  # plain progress when stderr is not a terminal
    s3.put_object(Bucket=bucket, Key="b.log.gz", Body=b"\x1f\x8b\x08broken")
    p = run_cli(
        "ship", f"s3://{bucket}", "--to", str(tmp_path / "o"), "--ledger", led, "--json", env=env
    )
    assert p.returncode == 1
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["objects"] == 0
    assert summary["failed"][0]["key"] == "b.log.gz"
    # usage errors: exit 2, one line, no traceback
    for args in (
        ["ship", f"s3://{bucket}", "--to", str(tmp_path / "o"), "--key", "a", "--latest", "1"],
        ["ship", "ftp://x", "--to", str(tmp_path / "o")],
        ["ship", f"s3://{bucket}", "--to", "ftp://nowhere"],
        ["ship", f"s3://{bucket}", "--to", str(tmp_path / "o"), "--format", "nope"],
        ["ship", f"s3://{bucket}", "--to", "mezmo+https://u:secret@logs.example/logs/ingest"],
    ):
        p = run_cli(*args, "--ledger", led, env=env)
        assert p.returncode == 2, (args, p.stderr)
        assert "Traceback" not in p.stderr
        assert "secret" not in p.stderr


def test_cli_status_pull_purge(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = put_fixtures(s3, bucket)
    env = {"AWS_ENDPOINT_URL": s3_endpoint}
    led = f"sqlite:///{tmp_path}/l.db"
    assert (
        run_cli(
            "ship", f"s3://{bucket}", "--to", str(tmp_path / "o"), "--ledger", led, env=env
        ).returncode
        == 0
    )
    p = run_cli("status", "--ledger", led, "--json")
    (row,) = json.loads(p.stdout)["sources"]
    assert (row["source"], row["done"], row["failed"], row["lines"]) == (f"s3://{bucket}", 2, 0, 2)
    p = run_cli("status", "--ledger", led)
    assert f"s3://{bucket}" in p.stdout
    # pull: the lines that would be shipped, per object and concatenated
    p = run_cli(
        "pull",
        f"s3://{bucket}",
        "--dest",
        str(tmp_path / "pulled"),
        "--concat",
        str(tmp_path / "all.log"),
        env=env,
    )
    assert p.returncode == 0, p.stderr
    concat = (tmp_path / "all.log").read_text().splitlines()
    assert len(concat) == 2
    assert orjson.loads(concat[0])["key"] == keys["911"]
    assert len(list((tmp_path / "pulled").rglob("*.log"))) == 2
    # purge refuses without --yes, counts with --dry-run, deletes with --yes
    assert run_cli("purge", f"s3://{bucket}", env=env).returncode == 2
    p = run_cli("purge", f"s3://{bucket}", "--dry-run", "--json", env=env)
    assert json.loads(p.stdout[p.stdout.index("{") :]) == {"would_delete": 2}
    p = run_cli("purge", f"s3://{bucket}", "--yes", "--json", env=env)
    assert json.loads(p.stdout) == {"deleted": 2}
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_local_directory_is_a_bucket(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "x.ndjson").write_bytes(ndjson_object(4))
    (src / "top.log").write_text("hello\r\nworld\r\n")
    r = ship(str(src), to=f"file://{tmp_path}/out", ledger=str(tmp_path / "l.db"))
    assert r.objects == 2
    assert r.lines == 6
    assert (tmp_path / "out" / "a" / "b" / "x.ndjson.jsonl").exists()
    assert [x["line"] for x in read_jsonl(tmp_path / "out" / "top.log.jsonl")] == ["hello", "world"]
    r = ship(f"file://{src}", to=f"file://{tmp_path}/out", ledger=str(tmp_path / "l.db"))
    assert r.objects == 0


def test_stop_event_checkpoints_and_resumes(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    (src / "big.ndjson").write_bytes(ndjson_object(20000))
    stop = threading.Event()

    class StopSoon(Progress):
        seen = 0

        def advanced(self, lines: int, raw_bytes: int) -> None:
            self.seen += lines
            if self.seen >= 3000:
                stop.set()

    kw = {"to": str(tmp_path / "out"), "ledger": str(tmp_path / "l.db"), "batch_bytes": 20_000}
    r = ship(str(src), progress=StopSoon(), stop=stop, **kw)
    assert r.interrupted
    assert 3000 <= r.lines < 20000
    led = SQLiteLedger(tmp_path / "l.db")
    (entry,) = led.entries()
    assert entry.status == Status.PENDING
    assert entry.position == r.lines
    led.close()
    r2 = ship(str(src), **kw)
    assert r2.ok
    assert r2.lines == 20000 - r.lines
    ns = [orjson.loads(x["line"])["n"] for x in read_jsonl(tmp_path / "out" / "big.ndjson.jsonl")]
    assert ns == list(range(20000))


def test_cos_alias_reads_the_original_ibm_names(
    s3, bucket, s3_endpoint, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    put_fixtures(s3, bucket)
    monkeypatch.setenv("COS_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("COS_BUCKET", bucket)
    monkeypatch.setenv("COS_HMAC_ACCESS_KEY_ID", "hmac-id")
    monkeypatch.setenv("COS_HMAC_SECRET_ACCESS_KEY", "hmac-secret")
    r = ship("cos://", to=str(tmp_path / "out"), ledger=str(tmp_path / "l.db"))
    assert r.ok
    assert r.objects == 2
    assert r.lines == 2
    assert r.source == f"cos://{bucket}/"


def test_stdout_sink(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    (src / "a.log").write_text("hello\n")
    p = run_cli("ship", str(src), "--to", "-", "--ledger", str(tmp_path / "l.db"), "--quiet")
    assert p.returncode == 0, p.stderr
    (row,) = [orjson.loads(x) for x in p.stdout.splitlines()]
    assert row["line"] == "hello"
    assert row["key"] == "a.log"
    assert row["timestamp"].endswith("Z")


def test_syslog_timezone_option(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    path = src / "messages.log"
    path.write_text("<13>Jun 25 22:56:21 web1 sshd[42]: Accepted publickey for ops\n")
    os.utime(path, (1_624_660_000, 1_624_660_000))  # 2021-06-25: the year comes from here
    out = tmp_path / "out"
    p = run_cli("ship", str(src), "--to", str(out), "--ledger", str(tmp_path / "l.db"),
                "--syslog-timezone", "Europe/Paris")  # fmt: skip
    assert p.returncode == 0, p.stderr
    (row,) = read_jsonl(out / "messages.log.jsonl")
    assert row["timestamp"] == "2021-06-25T20:56:21.000Z"  # 22:56 in Paris (UTC+2)
    p = run_cli("ship", str(src), "--to", str(out), "--syslog-timezone", "Mars/Olympus")
    assert p.returncode == 2
    assert "unknown syslog timezone" in p.stderr


def test_pull_with_parallel_workers_gets_every_object(tmp_path: Path) -> None:
    src = tmp_path / "bucket"
    src.mkdir()
    for i in range(12):
        (src / f"o{i:02d}.log").write_text(f"line {i}\n")
    for _ in range(3):  # a race shows up only sometimes: try a few times
        dest = tmp_path / f"pulled{_}"
        p = run_cli("pull", str(src), "--dest", str(dest), "--json", "--quiet")
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr
        assert len(list(dest.rglob("*.log"))) == 12
        assert not list(dest.rglob("*.partial"))
