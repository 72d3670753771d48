"""``logferry package lambda``: the zip deploys (handler imports and ships from it alone)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logferry import packaging as pkg
from logferry.cli.package import package

# The zip's native wheels must load here: build for this interpreter (the deploy default,
# the template's runtime, is checked in tests/cli/test_deploy.py).
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    """One build per session (it downloads wheels): the zip, where it was unzipped, the JSON report."""
    if os.uname().machine != "x86_64":  # pragma: no cover - the wheels must load on this host
        pytest.fail("this test builds x86_64 wheels and imports them: run it on x86_64")
    out = tmp_path_factory.mktemp("lambda") / "logferry-lambda.zip"
    result = CliRunner().invoke(package, ["lambda", str(out), "--python-version", HERE, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    unzipped = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unzipped)
    yield out, unzipped, report


def test_zip_holds_logferry_and_its_dependencies_but_not_boto3(built) -> None:  # type: ignore[no-untyped-def]
    out, _, report = built
    names = zipfile.ZipFile(out).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "logferry/serverless/aws_lambda.py" in names
    assert any(t.startswith("logferry-") and t.endswith(".dist-info") for t in tops)
    for needed in ("orjson", "httpx", "pydantic", "pydantic_core", "zstandard", "yaml", "psycopg"):
        assert needed in tops, needed
    for provided in (
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
        "six.py",
    ):
        assert provided not in tops, provided
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert "bin" not in tops
    assert set(report["packages"]) >= {"orjson", "pydantic-core", "psycopg-binary"}
    assert "boto3" not in report["packages"]


def test_zip_is_within_lambda_limits_and_deterministic(built) -> None:  # type: ignore[no-untyped-def]
    out, _, report = built
    assert report["zipped_bytes"] == out.stat().st_size < pkg.DIRECT_UPLOAD_LIMIT
    infos = zipfile.ZipFile(out).infolist()
    assert report["unzipped_bytes"] == sum(i.file_size for i in infos) < pkg.UNZIPPED_LIMIT
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {pkg.ZIP_EPOCH}


def test_handler_imports_and_ships_from_the_unzipped_package(  # type: ignore[no-untyped-def]
    built, s3, bucket, s3_endpoint, tmp_path
) -> None:
    """Like the runtime: the zip's directory first on the path, boto3 from the environment."""
    _, unzipped, _ = built
    s3.put_object(Bucket=bucket, Key="a.ndjson.gz", Body=gzip.compress(b'{"n": 1}\n{"n": 2}\n'))
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": "a.ndjson.gz", "size": 1}}}  # fmt: skip
    event = {"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
                          "body": json.dumps({"Records": [record]})}]}  # fmt: skip
    script = (
        "import json, sys, logferry, pydantic_core, orjson, boto3\n"
        "import logferry.serverless.aws_lambda as m\n"
        "print(json.dumps({'files': [logferry.__file__, pydantic_core.__file__, orjson.__file__],\n"
        "                  'boto3': boto3.__file__, 'result': m.handler(json.loads(sys.argv[1]))}))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(unzipped),
        "AWS_ENDPOINT_URL": s3_endpoint,
        "LOGFERRY_SINKS": f"file://{tmp_path / 'out'}",
        "LOGFERRY_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LOGFERRY_BUCKETS": bucket,
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(event)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert all(f.startswith(str(unzipped)) for f in seen["files"]), seen["files"]
    assert not seen["boto3"].startswith(str(unzipped))
    assert seen["result"] == {"batchItemFailures": []}
    shipped = [json.loads(x)["line"] for p in (tmp_path / "out").rglob("*.jsonl") for x in p.read_text().splitlines()]  # fmt: skip
    assert sorted(shipped) == ['{"n": 1}', '{"n": 2}']


def test_requirements_leave_out_the_runtime_and_optionally_postgres() -> None:
    names = {pkg.requirement_name(r) for r in pkg.runtime_requirements()}
    assert {"orjson", "pydantic", "zstandard", "psycopg", "psycopg-pool"} <= names
    assert not names & pkg.RUNTIME_PROVIDED
    lean = {pkg.requirement_name(r) for r in pkg.runtime_requirements(postgres=False)}
    assert not lean & pkg.POSTGRES
    assert "orjson" in lean
    extra = pkg.runtime_requirements(extra=("requests>=2",))
    assert extra[-1] == "requests>=2"


def test_platform_tags_follow_arch_and_python() -> None:
    assert pkg.pip_platforms("x86_64", "3.11") == ["manylinux2014_x86_64"]
    assert pkg.pip_platforms("arm64", "3.13") == [
        "manylinux2014_aarch64",
        "manylinux_2_28_aarch64",
    ]


def _no_pip(target: Path, requirements: list[str], arch: str, python_version: str) -> None:
    """Stand-in for the download: the tests below exercise everything around it."""


def test_refuses_a_package_over_the_unzipped_limit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pkg, "pip_install", _no_pip)
    monkeypatch.setattr(pkg, "UNZIPPED_LIMIT", 1000)
    out = tmp_path / "f.zip"
    result = CliRunner().invoke(package, ["lambda", str(out)])
    assert result.exit_code == 1
    assert "over Lambda's" in result.output
    assert "unzipped" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()


def test_warns_over_the_direct_upload_limit(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pkg, "pip_install", _no_pip)
    monkeypatch.setattr(pkg, "DIRECT_UPLOAD_LIMIT", 1000)
    result = CliRunner().invoke(package, ["lambda", str(tmp_path / "f.zip")])
    assert result.exit_code == 0, result.output
    assert "warning" in result.output
    assert "through S3" in result.output


def test_the_zip_is_byte_identical_when_built_twice(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pkg, "pip_install", _no_pip)
    a = pkg.build_lambda_zip(tmp_path / "a.zip")
    b = pkg.build_lambda_zip(tmp_path / "b.zip")
    assert a.path.read_bytes() == b.path.read_bytes()


def test_usage_errors_exit_2_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    bad = runner.invoke(package, ["lambda", str(tmp_path / "f.zip"), "--python-version", "3"])
    assert bad.exit_code == 2
    assert "--python-version must look like" in bad.output
    nodir = runner.invoke(package, ["lambda", str(tmp_path / "missing" / "f.zip")])
    assert nodir.exit_code == 2
    assert "is not a directory" in nodir.output
    arch = runner.invoke(package, ["lambda", str(tmp_path / "f.zip"), "--arch", "sparc"])
    assert arch.exit_code == 2


def test_pip_failure_is_a_one_line_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(
        package,
        ["lambda", str(tmp_path / "f.zip"), "--with", "logferry-no-such-package-xyz==0.0.0"],
    )
    assert result.exit_code == 1
    assert "pip could not install" in result.output
    assert "Traceback" not in result.output
