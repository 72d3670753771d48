"""Optional extras: the core install runs the demo; a missing extra is a one-line error naming it.

Each test runs the real command in a subprocess where the optional libraries cannot be
imported: a ``sitecustomize`` on PYTHONPATH puts None in ``sys.modules`` for each of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from logferry.extras import EXTRAS
from tests.conftest import REPO

OPTIONAL = ("duckdb", "numpy", "fastapi", "uvicorn", "watchdog", "starlette", "shiv")

SITECUSTOMIZE = """
import os, sys
for name in os.environ.get("LOGFERRY_TEST_BLOCK", "").split(","):
    if name:
        sys.modules[name] = None  # import raises ModuleNotFoundError, as if not installed
"""


def _run(
    tmp_path: Path, *args: str, block: tuple[str, ...] = OPTIONAL
) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(REPO / "src")]),
        "LOGFERRY_TEST_BLOCK": ",".join(block),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "logferry", *args],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_extras_in_pyproject_match_the_table_the_errors_use() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["optional-dependencies"]
    names = {
        extra: {req.split(">")[0].split("[")[0].lower() for req in reqs}
        for extra, reqs in declared.items()
    }
    for extra, modules in EXTRAS.items():
        assert names[extra] == set(modules), extra
    everything = set().union(*EXTRAS.values())
    assert names["all"] == everything
    assert names["dev"] >= everything
    core = {req.split(">")[0].split("[")[0].lower() for req in project["dependencies"]}
    assert not core & everything


def test_core_install_runs_the_demo(tmp_path: Path) -> None:
    proc = _run(tmp_path, "demo", "--dir", str(tmp_path / "demo"), "--objects", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    assert list((tmp_path / "demo" / "out").rglob("*.jsonl"))


def test_duckdb_sink_without_the_store_extra(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.log").write_text("one\ntwo\n")
    proc = _run(tmp_path, "ship", str(tmp_path / "in"), "--to", f"duckdb:///{tmp_path}/s.db")
    assert proc.returncode == 2
    line = _one_error_line(proc)
    assert "duckdb" in line
    assert "pip install 'logferry[store]'" in line


@pytest.mark.parametrize(
    "args",
    [("serve", "--port", "0"), ("stats", "c1", "--from-date", "2024-01-01")],
    ids=["serve", "stats"],
)
def test_stats_commands_without_the_stats_extra(tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = _run(tmp_path, *args, "--store", f"duckdb:///{tmp_path}/s.db")
    assert proc.returncode == 2
    assert "pip install 'logferry[stats]'" in _one_error_line(proc)


def test_api_request_format_falls_back_to_python_without_numpy(tmp_path: Path) -> None:
    log = tmp_path / "in" / "api.log"
    log.parent.mkdir()
    gen = _run(tmp_path, "generate", "api-requests", "--out", str(log), "--max", "500",
               "--batch", "500", "--interval", "0", "--seed", "3")  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    out = tmp_path / "out"
    proc = _run(tmp_path, "ship", str(log.parent), "--format", "api-request", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    shipped = [ln for p in out.rglob("*.jsonl") for ln in p.read_text().splitlines()]
    assert len(shipped) == 500


def test_version_and_help_import_nothing_optional(tmp_path: Path) -> None:
    for args in (("--version",), ("--help",), ("package", "--help"), ("deploy", "--help")):
        proc = _run(tmp_path, *args)
        assert proc.returncode == 0, (args, proc.stderr)
