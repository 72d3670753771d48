"""An empty CloudWatch match warns, names the prefix looked up and suggests the likely fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cloudwatch.conftest import cw_env, put
from tests.conftest import run_cli


def _ship(url: str, endpoint: str, tmp_path: Path) -> Any:
    return run_cli(
        "ship", url, "--to", str(tmp_path / "out"), "--ledger", str(tmp_path / "l.db"),
        env=cw_env(endpoint),
    )  # fmt: skip


def test_two_slashes_suggest_three(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    put(logs, prefix + "fn", "s1", ["a", "b"])
    bare = prefix.lstrip("/")  # cloudwatch://test/… looks up "test/…", not "/test/…"
    p = _ship(f"cloudwatch://{bare}", logs_endpoint, tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"no log group name begins with '{bare}'" in p.stderr
    assert f"did you mean cloudwatch:///{bare}" in p.stderr
    assert p.stderr.count("WARNING") == 1
    p = _ship(f"cloudwatch://{prefix}", logs_endpoint, tmp_path)
    assert p.returncode == 0, p.stderr
    assert "WARNING" not in p.stderr


def test_groups_without_a_matching_stream(
    logs: Any, logs_endpoint: str, prefix: str, tmp_path: Path
) -> None:
    put(logs, prefix + "fn", "s1", ["a"])
    p = _ship(f"cloudwatch://{prefix}?stream_regex=^nope", logs_endpoint, tmp_path)
    assert p.returncode == 0, p.stderr
    assert (
        f"1 log group begins with '{prefix}', but none of their streams matches "
        "stream_regex '^nope'" in p.stderr
    )
    p = _ship("cloudwatch://nothing-like-this/", logs_endpoint, tmp_path)
    assert "no log group name begins with 'nothing-like-this/'" in p.stderr
    assert "cloudwatch:///nothing-like-this/" in p.stderr
