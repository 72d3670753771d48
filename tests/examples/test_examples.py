"""Every file in examples/ works as the docs say: pipelines validate with the real CLI, handler
modules import and behave, and the pipelines run end to end into temporary directories."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

#: Files in examples/ that are neither pipeline files nor handler modules, with their test.
OTHER_FILES = {
    "README.md": "test_examples_readme_lists_every_file",
    "cloudwatch-download.yaml": "test_cloudwatch_download_options",
    "ship_library.py": "test_library_example_ships_a_directory",
    "deploy": "tests/examples/test_deploy.py (the systemd unit, the Kubernetes manifests)",
}
#: Handler modules, imported by pipeline files as ``module:Class``.
HANDLERS = {"audit_handler.py": "Audit"}


def _pipelines() -> list[str]:
    """The YAML files of examples/ that are pipeline files (they have ``sources:``)."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name in OTHER_FILES:
            continue
        found.append(path.name)
    return found


PIPELINES = _pipelines()


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment for the CLI: this checkout and examples/ importable, state kept in tmp_path."""
    env = dict(os.environ)
    for name in ("LOGFERRY_LEDGER", "LOGFERRY_STORE", "LOGFERRY_CONFIG", "AWS_LOGS_DIRECTORY"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(EXAMPLES)])
    env["LOGFERRY_LEDGER"] = f"sqlite:///{tmp_path / 'default-ledger.db'}"
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["LOGDNA_INGESTION_KEY"] = "example-key-not-a-secret"
    env["FLOWLOG_BUCKET"] = "flowlog-bucket"
    env.update(extra)
    return env


def _logferry(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "logferry", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_file_is_tested() -> None:
    """A new file in examples/ must be a pipeline, a handler, or listed here with its test."""
    assert PIPELINES, "no pipeline files in examples/"
    for path in EXAMPLES.iterdir():
        if path.name == "__pycache__":
            continue
        assert path.name in PIPELINES or path.name in HANDLERS or path.name in OTHER_FILES, (
            f"examples/{path.name} is not covered by tests/examples"
        )
    for name in PIPELINES:
        data = yaml.safe_load((EXAMPLES / name).read_text())
        assert isinstance(data, dict) and "sources" in data, f"{name} is not a pipeline file"


@pytest.mark.parametrize("name", PIPELINES)
def test_pipeline_validates(name: str, tmp_path: Path) -> None:
    """`logferry validate -c examples/NAME` passes, with the documented environment."""
    (tmp_path / "demo" / "bucket").mkdir(parents=True)
    env = _env(tmp_path, LOGFERRY_EXAMPLE_DIR=str(tmp_path / "demo"))
    proc = _logferry(["validate", "-c", str(EXAMPLES / name)], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"{name}: OK" in proc.stderr + proc.stdout


def test_pipeline_yaml_needs_its_bucket_variable(tmp_path: Path) -> None:
    """The docs show `${FLOWLOG_BUCKET}` without a default: unset, validate names it."""
    env = _env(tmp_path)
    env.pop("FLOWLOG_BUCKET")
    proc = _logferry(["validate", "-c", str(EXAMPLES / "pipeline.yaml")], env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "${FLOWLOG_BUCKET} is not set" in proc.stderr


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_handler_module_imports_and_answers(name: str) -> None:
    """Each handler module imports and has the class with setup/recv/result."""
    module = _import(EXAMPLES / name)
    cls = getattr(module, HANDLERS[name])
    for method in ("setup", "recv", "result"):
        assert callable(getattr(cls, method, None)), f"{name}: {cls.__name__}.{method}"


def test_audit_handler_counts_failures() -> None:
    module = _import(EXAMPLES / "audit_handler.py")
    audit = module.Audit()
    audit.setup({"threshold": 2})
    for user in ("bob", "bob", "eve"):
        audit.recv({"key": "k"}, {"outcome": "failure", "user": user})
    audit.recv({"key": "k"}, "a plain line")
    audit.recv({"key": "k"}, {"outcome": "success", "user": "eve"})
    assert audit.result() == {"bob": 2}


def test_audit_handler_in_a_pipeline(tmp_path: Path) -> None:
    """The handler as `type: python` in a pipeline run: its result lands in the summary."""
    bucket = tmp_path / "bucket" / "apps"
    bucket.mkdir(parents=True)
    lines = [{"outcome": "failure", "user": "bob"}] * 3 + [{"outcome": "failure", "user": "eve"}]
    (bucket / "logins.ndjson").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "p.yaml").write_text(
        "ledger: sqlite:///${D}/ledger.db\n"
        "sinks:\n  audit:\n    type: python\n    handler: audit_handler:Audit\n"
        "    args: {threshold: 3}\n"
        "sources:\n  apps:\n    url: ${D}/bucket\n    format: ndjson\n    sinks: [audit]\n"
    )
    env = _env(tmp_path, D=str(tmp_path))
    proc = _logferry(["run", "-c", "p.yaml", "--once", "--json"], env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["handlers"] == {"audit": {"bob": 3}}


def test_local_pipeline_end_to_end(tmp_path: Path) -> None:
    """examples/local-pipeline.yaml: a directory of flow logs into JSONL files, once."""
    demo = tmp_path / "demo"
    env = _env(tmp_path, LOGFERRY_EXAMPLE_DIR=str(demo))
    gen = _logferry(
        ["generate", "flowlogs", "--to", str(demo / "bucket"), "--objects", "3"], env, tmp_path
    )
    assert gen.returncode == 0, gen.stderr
    pipeline = str(EXAMPLES / "local-pipeline.yaml")
    first = _logferry(["run", "-c", pipeline, "--once", "--json"], env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["objects"] == 3 and summary["failed"] == []
    outputs = list((demo / "out").rglob("*.jsonl"))
    assert len(outputs) == 3
    written = sum(len(p.read_text().splitlines()) for p in outputs)
    assert written == summary["lines"] > 0
    assert (demo / "ledger.db").exists()
    again = _logferry(["run", "-c", pipeline, "--once", "--json"], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["objects"] == 0


def test_stats_pipeline_end_to_end(tmp_path: Path) -> None:
    """examples/stats-pipeline.yaml: generated request lines → DuckDB → `logferry stats`."""
    log = tmp_path / "logs" / "api_requests.log"
    log.parent.mkdir()
    store = f"duckdb:///{tmp_path / 'store.db'}"
    env = _env(tmp_path, API_REQUESTS_LOG=str(log), LOGFERRY_STORE=store)
    generate = ["generate", "api-requests", "--out", str(log), "--max", "500", "--batch", "100"]
    generate += ["--start", "2026-11-01", "--seed", "7", "--customers", "5"]
    gen = _logferry(generate, env, tmp_path)
    assert gen.returncode == 0, gen.stderr
    assert len(log.read_text().splitlines()) == 500
    run = _logferry(
        ["run", "-c", str(EXAMPLES / "stats-pipeline.yaml"), "--once"], env, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "store.db").exists()
    customer = log.read_text().split()[2]
    stats = _logferry(
        ["stats", customer, "--from-date", "2026-11-01", "--to-date", "2026-11-02", "--json"],
        env,
        tmp_path,
    )
    assert stats.returncode == 0, stats.stderr
    expected = sum(1 for line in log.read_text().splitlines() if line.split()[2] == customer)
    assert json.loads(stats.stdout)["total"]["total_requests"] == expected


def test_cloudwatch_download_options() -> None:
    """examples/cloudwatch-download.yaml is a valid `cloudwatch download --config` file, and the
    original tool's environment variables override it, as the reference says."""
    from logferry.cloudwatch.download import resolve_options

    path = str(EXAMPLES / "cloudwatch-download.yaml")
    options = resolve_options({}, path, {})
    assert options.group_prefix == "/ecs/"
    assert options.stream_regex == "^web/"
    assert options.dir == "/var/log/cw"
    assert options.follow is True
    assert (options.get_rate, options.describe_rate) == (25, 5)
    overridden = resolve_options({"dir": "/flag"}, path, {"AWS_LOGS_DIRECTORY": "/env"})
    assert overridden.dir == "/flag"
    assert resolve_options({}, path, {"AWS_LOGS_DIRECTORY": "/env"}).dir == "/env"


def test_library_example_ships_a_directory(tmp_path: Path) -> None:
    """examples/ship_library.py: the library call of the reference, on a local directory."""
    env = _env(tmp_path)
    gen = _logferry(
        ["generate", "flowlogs", "--to", str(tmp_path / "bucket"), "--objects", "2"], env, tmp_path
    )
    assert gen.returncode == 0, gen.stderr
    args = [str(tmp_path / "bucket"), str(tmp_path / "out"), f"sqlite:///{tmp_path / 'l.db'}"]
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "ship_library.py"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["objects"] == 2 and summary["failed"] == []
    assert len(list((tmp_path / "out").rglob("*.jsonl"))) == 2


def test_examples_readme_lists_every_file() -> None:
    text = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLES.rglob("*"):
        name = path.relative_to(EXAMPLES).as_posix()
        if path.is_file() and name != "README.md" and "__pycache__" not in path.parts:
            assert f"`{name}`" in text, f"examples/README.md does not list {name}"
