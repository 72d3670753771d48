"""CloudWatch as a pipeline source: a config file, the ledger's cursors, no gap, no repeat."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

from tests.cloudwatch.conftest import put
from tests.conftest import run_cli


def rows(out: Path) -> list[str]:
    return [orjson.loads(x)["line"] for p in sorted(out.rglob("*.jsonl"))
            for x in p.read_bytes().splitlines()]  # fmt: skip


def test_cloudwatch_source_in_a_pipeline_file(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    group = prefix + "app"
    put(logs, group, "web/1", [f"w1-{i}" for i in range(30)])
    put(logs, group, "Web/1", [f"W1-{i}" for i in range(5)])  # differs only in case
    out = tmp_path / "out"
    cfg = tmp_path / "cw.yaml"
    cfg.write_text(
        f"ledger: sqlite:///{tmp_path}/l.db\nbatch_lines: 7\n"
        f"sinks:\n  files: {{url: 'file://{out}'}}\n"
        f"sources:\n  cw:\n    type: cloudwatch\n    url: 'cloudwatch://{prefix}?start=1d'\n"
        f"    endpoint_url: '{logs_endpoint}'\n    sinks: [files]\n"
    )
    p = run_cli("ship", "-c", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.splitlines()[-1])["lines"] == 35
    assert sorted(rows(out)) == sorted(
        [f"w1-{i}" for i in range(30)] + [f"W1-{i}" for i in range(5)]
    )
    put(logs, group, "web/1", ["late"], start_ms=None)
    p = run_cli("ship", "-c", str(cfg), "--json")
    assert json.loads(p.stdout.splitlines()[-1])["lines"] == 1
    assert rows(out).count("late") == 1
    assert len(rows(out)) == 36


def test_no_region_is_a_one_line_usage_error(tmp_path: Path) -> None:
    env = {"AWS_DEFAULT_REGION": "", "AWS_REGION": "", "AWS_CONFIG_FILE": str(tmp_path / "none")}
    for args in (
        ["cloudwatch", "groups", "--prefix", "/x"],
        [
            "ship",
            "cloudwatch:///x/",
            "--to",
            str(tmp_path / "o"),
            "--ledger",
            str(tmp_path / "l.db"),
        ],
    ):
        p = run_cli(*args, env=env)
        assert p.returncode == 2, (args, p.stderr)
        assert "region" in p.stderr.lower()
        assert "Traceback" not in p.stderr
