"""Names of the files the file sink writes: safe, unique, readable; partials cleaned up."""

from __future__ import annotations

import gzip
import itertools
import signal
import unicodedata
from pathlib import Path

import orjson
import pytest

from logferry.records import Batch, ObjectInfo
from logferry.sinks.files import MAX_PART_BYTES, FileSink, safe_relpath
from tests.conftest import run_cli
from tests.runner.test_crash import start_ship, wait_for_checkpoint
from tests.runner.test_ship import ndjson_object, read_jsonl

IBM_KEY = (
    "ibm_vpc_flowlogs_v1/account=713c/region=us-south/"
    "vpc-id=crn%3Av1%3Abluemix%3Apublic%3Ais%3Aus-south%3Aa%2F713c%3A%3Avpc%3Ar006-fc3e/"
    "00000001.gz"
)

HOSTILE = [
    "",
    "/",
    "//",
    "a",
    "/a",
    "a/",
    "a//b",
    ".",
    "..",
    "../x",
    "a/../../b",
    "a.jsonl/b",
    "a.jsonl",
    "a%2Ejsonl/b",
    "a.log/b",
    ".a.jsonl.partial/b",
    "~",
    "%7E",
    "%",
    "%25",
    "%2525",
    "%%",
    "%2E",
    "%2E%2E",
    "~empty",
    "~root/a",
    "%7Eroot/a",
    "a\nb",
    "a%0Ab",
    "a\x1b[31mred",
    "\u202eevil.log",
    "\udcff.log",
    "\ud800.log",
    "é",
    "%C3%A9",
    "x" * 300,
    "x" * 300 + "y",
    "x" * 199,
    "x" * 200,
    "x" * 201,
    "é" * 150,
    IBM_KEY,
    "app/2026/x.log",
    "my file:[$LATEST]",
]


def test_plain_keys_keep_their_names() -> None:
    assert safe_relpath("app/2026/x.log") == "app/2026/x.log"
    assert safe_relpath("AWSLogs/123/vpcflowlogs/us-east-1/2026/01/01/a_b-c.log.gz") == (
        "AWSLogs/123/vpcflowlogs/us-east-1/2026/01/01/a_b-c.log.gz"
    )
    assert safe_relpath("my file:[$LATEST]") == "my file:[$LATEST]"
    # the key's own percent escapes stay as they are: no crn%253Av1
    assert safe_relpath(IBM_KEY) == IBM_KEY


def test_special_parts() -> None:
    assert safe_relpath("a.jsonl/b") == "a%2Ejsonl/b"
    assert safe_relpath("../x") == "%2E%2E/x"
    assert safe_relpath("a//b/") == "a/~empty/b/~empty"
    assert safe_relpath("/var/log/x") == "~root/var/log/x"
    assert safe_relpath("/var/log/x", drop_root=True) == "var/log/x"
    assert safe_relpath("a\x1b[31m~") == "a%1B[31m%7E"
    assert safe_relpath("50%25 off") == "50%2525 off"  # %25 would read as an escape


def _components(key: str) -> list[str]:
    return (safe_relpath(key) + ".jsonl").split("/")


@pytest.mark.parametrize("key", HOSTILE)
def test_names_are_safe(key: str, tmp_path: Path) -> None:
    for part in _components(key):
        assert part not in ("", ".", "..")
        assert len(("." + part + ".partial").encode("utf-8", "surrogateescape")) <= 255
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in part)
    path = FileSink(tmp_path).path_for(key)
    assert tmp_path.resolve() in path.resolve().parents
    assert len(safe_relpath("x" * 300).encode()) <= MAX_PART_BYTES


def test_names_are_unique_and_never_a_file_and_a_directory() -> None:
    files = {key: _components(key) for key in HOSTILE}
    assert len({tuple(c) for c in files.values()}) == len(HOSTILE)
    for (k1, c1), (k2, c2) in itertools.permutations(files.items(), 2):
        # no key's file is a directory of another key's path
        assert c1 != c2[: len(c1)], (k1, k2)
    # and the partial files are neither of these
    dirs = {part for c in files.values() for part in c[:-1]}
    assert not any(part.endswith((".jsonl", ".partial")) for part in dirs)


def _make_batch(key: str, lines: list[str], start: int) -> Batch:
    return Batch(
        source="src",
        key=key,
        lines=lines,
        timestamps=[0] * len(lines),
        start=start,
        end=start + len(lines),
    )


def test_clashing_and_long_keys_through_the_sink_api(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out")
    keys = ["a", "a.jsonl/b", "p/" + "x" * 300, "p/" + "x" * 300 + "y", IBM_KEY]
    for i, key in enumerate(keys):
        obj = ObjectInfo(key, 1, "e", 0)
        sink.open("src", obj, 0)
        sink.write(_make_batch(key, [f"line {i}"], 0))
        sink.commit("src", obj)
    for i, key in enumerate(keys):
        assert [r["line"] for r in read_jsonl(sink.path_for(key))] == [f"line {i}"]
    assert len(list((tmp_path / "out").rglob("*.jsonl"))) == len(keys)
    assert not list((tmp_path / "out").rglob("*%25*"))


def test_an_aborted_empty_object_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    sink = FileSink(out)
    sink.open("src", ObjectInfo("keep/a", 1, "e", 0), 0)
    sink.write(_make_batch("keep/a", ["acknowledged"], 0))
    sink.abort("src", ObjectInfo("keep/a", 1, "e", 0))  # holds records: stays for a resume
    obj = ObjectInfo("deep/er/b", 1, "e", 0)
    sink.open("src", obj, 0)
    sink.abort("src", obj)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "keep",
        "keep/.a.jsonl.partial",
    ]
    sink.open("src", ObjectInfo("keep/a", 1, "e", 0), 1)  # and resumes from it
    sink.write(_make_batch("keep/a", ["next"], 1))
    sink.commit("src", ObjectInfo("keep/a", 1, "e", 0))
    assert [r["line"] for r in read_jsonl(out / "keep/a.jsonl")] == ["acknowledged", "next"]


def test_a_corrupt_object_leaves_no_partial_file(tmp_path: Path) -> None:
    src, out = tmp_path / "bucket", tmp_path / "out"
    (src / "bad" / "deep").mkdir(parents=True)
    (src / "good").mkdir()
    (src / "bad" / "deep" / "x.ndjson.gz").write_bytes(gzip.compress(b'{"n": 1}\n')[:-12])
    (src / "good" / "y.ndjson.gz").write_bytes(ndjson_object(3))
    p = run_cli("ship", str(src), "--to", str(out), "--ledger", str(tmp_path / "l.db"))
    assert p.returncode != 0
    assert "x.ndjson.gz" in p.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "good",
        "good/y.ndjson.gz.jsonl",
    ]


def test_clashing_keys_with_the_cli(tmp_path: Path) -> None:
    src, out = tmp_path / "bucket", tmp_path / "out"
    (src / "a.jsonl").mkdir(parents=True)
    (src / "a").write_text("top\n")
    (src / "a.jsonl" / "b").write_text("below\n")
    (src / "crn%3Av1 x").write_text("ibm\n")
    p = run_cli("ship", str(src), "--to", str(out), "--ledger", str(tmp_path / "l.db"), "-q")
    assert p.returncode == 0, p.stderr
    assert [r["line"] for r in read_jsonl(out / "a.jsonl")] == ["top"]
    assert [r["line"] for r in read_jsonl(out / "a%2Ejsonl" / "b.jsonl")] == ["below"]
    assert [r["line"] for r in read_jsonl(out / "crn%3Av1 x.jsonl")] == ["ibm"]


def test_a_300_character_key_part_from_s3(s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    keys = ["logs/" + "k" * 300 + ".log", "logs/" + "k" * 300 + "-other.log", "a", "a.jsonl/b"]
    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=f"line {i}\n".encode())
    out = tmp_path / "out"
    p = run_cli(
        "ship", f"s3://{bucket}/", "--to", str(out), "--ledger", str(tmp_path / "l.db"), "-q",
        env={"AWS_ENDPOINT_URL": s3_endpoint},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    sink = FileSink(out)
    for i, key in enumerate(keys):
        assert [r["line"] for r in read_jsonl(sink.path_for(key))] == [f"line {i}"]
    long_names = sorted(f.name for f in (out / "logs").iterdir())
    assert len(long_names) == 2
    assert all(n.startswith("k" * 100) and "~" in n for n in long_names)


def test_resume_after_kill_9_mid_object_writes_every_line_once(tmp_path: Path) -> None:
    lines = 30_000
    src, out, led = tmp_path / "bucket", tmp_path / "out", tmp_path / "l.db"
    deep = src / "vpc-id=crn%3Av1%3Ax" / "a.jsonl"
    deep.mkdir(parents=True)
    (deep / "obj.ndjson.gz").write_bytes(ndjson_object(lines))
    (src / "vpc-id=crn%3Av1%3Ax" / "a").write_bytes(ndjson_object(10, lines))
    proc = start_ship(src, led, "--to", str(out))
    wait_for_checkpoint(led, proc, 500)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out.rglob(".*.partial"))  # killed inside the object
    p = run_cli("ship", str(src), "--to", str(out), "--ledger", str(led), "--json")
    assert p.returncode == 0, p.stderr
    assert orjson.loads(p.stdout.splitlines()[-1])["lines"] < lines + 10  # it resumed
    base = out / "vpc-id=crn%3Av1%3Ax"
    ns = [orjson.loads(r["line"])["n"] for r in read_jsonl(base / "a%2Ejsonl/obj.ndjson.gz.jsonl")]
    assert ns == list(range(lines))
    assert [orjson.loads(r["line"])["n"] for r in read_jsonl(base / "a.jsonl")] == list(
        range(lines, lines + 10)
    )
    assert not list(out.rglob("*.partial"))


def test_tailed_files_go_under_their_path_without_a_root_folder(tmp_path: Path) -> None:
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    (logs / "app.log").write_text("one\ntwo\n")
    p = run_cli(
        "ship", f"tail://{logs}/*.log", "--to", str(out), "--ledger", str(tmp_path / "l.db"),
        "--from", "beginning", "-q",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    (written,) = out.rglob("*.jsonl")
    rel = written.relative_to(out).as_posix()
    assert rel.startswith(str(logs).lstrip("/") + "/app.log~"), rel
    assert "%" not in rel
    assert [r["line"] for r in read_jsonl(written)] == ["one", "two"]
