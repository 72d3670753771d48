"""``logferry package lambda``: the zip deploys (handler imports and ships from it alone)."""

from __future__ import annotations

import gzip
import importlib
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
from logferry.config import PipelineConfig, SinkConfig, SourceConfig
from tests.conftest import REPO

#: The S3 -> Mezmo function must stay under this, zipped (issue 12: it was 53.9 MB).
LEAN_LIMIT = 15 * 1024 * 1024
#: What the Lambda runtime provides, as the handler test puts it on the path.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


@pytest.fixture(scope="module")
def built(
    lean_zip, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path, dict[str, Any]]]:  # type: ignore[no-untyped-def]
    """The S3 -> Mezmo zip, where it was unzipped, the JSON report."""
    out, report = lean_zip
    unzipped = tmp_path_factory.mktemp("unzipped")
    with zipfile.ZipFile(out) as zf:
        zf.extractall(unzipped)
    yield out, unzipped, report


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with only what the Lambda Python runtime adds to the standard library."""
    root = tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_MODULES:
        module = importlib.import_module(name)
        source = Path(module.__file__ or "")
        source = source.parent if source.name == "__init__.py" else source
        (root / source.name).symlink_to(source)
    return root


def test_zip_holds_what_s3_to_mezmo_needs_and_nothing_else(built) -> None:  # type: ignore[no-untyped-def]
    out, _, report = built
    names = zipfile.ZipFile(out).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "logferry/serverless/aws_lambda.py" in names
    assert any(t.startswith("logferry-") and t.endswith(".dist-info") for t in tops)
    for needed in ("orjson", "httpx", "pydantic", "pydantic_core", "zstandard", "yaml", "ijson"):
        assert needed in tops, needed
    assert "psycopg" in tops  # the ledger is not named: a PostgreSQL one may come
    for left_out in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3",
                     "six.py", "duckdb", "_duckdb", "numpy", "fastapi", "starlette", "uvicorn",
                     "watchdog", "click", "rich", "pygments"):  # fmt: skip
        assert left_out not in tops, left_out
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if "zstandard/_cffi" in n]
    assert "bin" not in tops
    assert report["extras"] == []
    assert report["unpinned"] == []  # every version comes from deploy/constraints.txt
    pins = pkg.read_constraints(REPO / "deploy" / "constraints.txt")
    assert all(
        pins[name] == version for name, version in report["packages"].items() if name != "logferry"
    )


def test_s3_to_mezmo_zip_is_small_and_deterministic(built) -> None:  # type: ignore[no-untyped-def]
    out, _, report = built
    assert report["zipped_bytes"] == out.stat().st_size <= LEAN_LIMIT
    infos = zipfile.ZipFile(out).infolist()
    assert report["unzipped_bytes"] == sum(i.file_size for i in infos) < pkg.UNZIPPED_LIMIT
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {pkg.ZIP_EPOCH}


def test_handler_imports_and_ships_from_the_unzipped_package(  # type: ignore[no-untyped-def]
    built, lambda_runtime, s3, bucket, s3_endpoint, tmp_path
) -> None:
    """Like the runtime: the zip's directory first on the path, then boto3 and its
    dependencies, and nothing else (no site-packages: python -S)."""
    _, unzipped, _ = built
    s3.put_object(Bucket=bucket, Key="a.ndjson.gz", Body=gzip.compress(b'{"n": 1}\n{"n": 2}\n'))
    record = {"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
              "s3": {"bucket": {"name": bucket}, "object": {"key": "a.ndjson.gz", "size": 1}}}  # fmt: skip
    event = {"Records": [{"messageId": "m1", "eventSource": "aws:sqs",
                          "body": json.dumps({"Records": [record]})}]}  # fmt: skip
    script = (
        "import json, sys, logferry, pydantic_core, orjson, boto3\n"
        "import logferry.serverless.aws_lambda as m\n"
        "result = m.handler(json.loads(sys.argv[1]))\n"
        "heavy = sorted(n for n in ('numpy', 'duckdb', 'rich', 'click') if n in sys.modules)\n"
        "print(json.dumps({'files': [logferry.__file__, pydantic_core.__file__, orjson.__file__],\n"
        "                  'boto3': boto3.__file__, 'result': result, 'heavy': heavy}))\n"
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(unzipped), str(lambda_runtime)]),
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing-key-id",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1",
        "LOGFERRY_SINKS": f"file://{tmp_path / 'out'}",
        "LOGFERRY_LEDGER": f"sqlite:///{tmp_path / 'ledger.db'}",
        "LOGFERRY_BUCKETS": bucket,
        "HOME": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script, json.dumps(event)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    assert all(f.startswith(str(unzipped)) for f in seen["files"]), seen["files"]
    assert seen["boto3"].startswith(str(lambda_runtime))
    assert seen["result"] == {"batchItemFailures": []}
    assert seen["heavy"] == []
    shipped = [json.loads(x)["line"] for p in (tmp_path / "out").rglob("*.jsonl") for x in p.read_text().splitlines()]  # fmt: skip
    assert sorted(shipped) == ['{"n": 1}', '{"n": 2}']


def test_requirements_follow_the_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = {pkg.requirement_name(r) for r in pkg.runtime_requirements()}
    assert {"orjson", "pydantic", "zstandard", "psycopg", "psycopg-pool"} <= names
    assert not names & (pkg.RUNTIME_PROVIDED | pkg.CLI_ONLY)
    assert not names & {"duckdb", "numpy", "fastapi", "uvicorn", "watchdog"}
    lean = {pkg.requirement_name(r) for r in pkg.runtime_requirements(postgres=False)}
    assert not lean & pkg.POSTGRES
    assert "orjson" in lean
    extra = pkg.runtime_requirements(extra=("requests>=2",))
    assert extra[-1] == "requests>=2"
    store = {pkg.requirement_name(r) for r in pkg.runtime_requirements(extras=["store"])}
    assert {"duckdb", "numpy"} <= store
    # What a pipeline needs: a duckdb:// sink brings the store extra; the ledger decides psycopg.
    config = PipelineConfig(
        sinks={"m": SinkConfig(url="logdna:us-south"), "db": SinkConfig(url="duckdb:///s.db")},
        sources={"s": SourceConfig(url="s3://b/", sinks=["m", "db"])},
    )
    needs = pkg.needs_of(config)
    assert needs.extras == {"store"}
    assert needs.postgres
    assert "sink 'db' (duckdb) needs logferry[store]" in needs.reasons
    assert not pkg.needs_of(config, "sqlite:////mnt/efs/l.db").postgres
    assert pkg.needs_of(config, "postgresql://u@h/db").postgres
    mezmo = config.model_copy(update={"sinks": {"m": config.sinks["m"]}, "ledger": "sqlite:///x"})
    assert pkg.needs_of(mezmo).extras == set()
    assert not pkg.needs_of(mezmo, "postgresql://u@h/db").postgres  # the file's ledger wins


def test_platform_tags_follow_arch_and_python() -> None:
    assert pkg.pip_platforms("x86_64", "3.11") == ["manylinux2014_x86_64"]
    assert pkg.pip_platforms("arm64", "3.13") == [
        "manylinux2014_aarch64",
        "manylinux_2_28_aarch64",
    ]


def _no_pip(target: Path, requirements: list[str], *args: Any) -> None:
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


def _system_python() -> list[str]:
    """The system Python, outside any virtual environment (isolated: no user site, no env)."""
    if Path("/usr/bin/python3").exists():
        return ["/usr/bin/python3", "-I"]
    return [getattr(sys, "_base_executable", sys.executable), "-I"]  # pragma: no cover


def test_zipapp_runs_with_the_system_python(tmp_path) -> None:  # type: ignore[no-untyped-def]
    python = _system_python()
    version = subprocess.run(
        [*python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    out = tmp_path / "logferry.pyz"
    result = CliRunner().invoke(
        package, ["zipapp", "--out", str(out), "--python-version", version, "--json"],
        env={"LOGFERRY_LEDGER": None},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"boto3", "click", "rich", "orjson"} <= set(report["packages"])  # a whole CLI
    assert not {"duckdb", "numpy"} & set(report["packages"])
    assert report["unpinned"] == []
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHIV_ROOT": str(tmp_path / "shiv")}
    run = lambda *args: subprocess.run(  # noqa: E731
        [*python, str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    shown = run("--version")
    assert shown.returncode == 0, shown.stderr
    assert "logferry" in shown.stdout
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "app.log.gz").write_bytes(gzip.compress(b"one\ntwo\nthree\n"))
    shipped = run("ship", str(tmp_path / "in"), "--to", str(tmp_path / "out"),
                  "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}")  # fmt: skip
    assert shipped.returncode == 0, shipped.stderr
    lines = [json.loads(x)["line"] for p in (tmp_path / "out").rglob("*.jsonl") for x in p.read_text().splitlines()]  # fmt: skip
    assert lines == ["one", "two", "three"]


def test_missing_shiv_names_the_extra(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "shiv", None)
    result = CliRunner().invoke(package, ["zipapp", "--out", str(tmp_path / "x.pyz")])
    assert result.exit_code == 2
    assert "pip install 'logferry[package]'" in result.output


def test_constraints_file_pins_every_requirement_and_extra() -> None:
    pins = pkg.read_constraints(REPO / "deploy" / "constraints.txt")
    for req in pkg.declared_requirements(pkg.EXTRAS):
        assert pkg.requirement_name(req) in pins, req
    text = (REPO / "deploy" / "constraints.txt").read_text()
    assert "logferry package lock" in text  # how to update it
