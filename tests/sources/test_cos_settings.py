"""``cos://`` names the IBM COS settings it needs instead of going to AWS without them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import run_cli


def _env_without_endpoints() -> dict[str, str]:
    drop = {"COS_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_cos_without_endpoint_names_the_cos_settings(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "logferry", "ship", "cos://bucket", "--to", "-",
         "--ledger", str(tmp_path / "l.db")],
        capture_output=True, text=True, env=_env_without_endpoints(), timeout=60,
    )  # fmt: skip
    assert p.returncode == 2, p.stderr
    assert "COS_ENDPOINT" in p.stderr and "COS_HMAC_ACCESS_KEY_ID" in p.stderr
    assert "AWS_ACCESS_KEY_ID" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cos_with_endpoint_ships(s3, bucket: str, s3_endpoint: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="logs/a.log", Body=b"one\ntwo\n")
    p = run_cli(
        "ship", f"cos://{bucket}/logs/", "--to", "-", "--ledger", str(tmp_path / "l.db"),
        env={"COS_ENDPOINT": s3_endpoint, "COS_HMAC_ACCESS_KEY_ID": "k",
             "COS_HMAC_SECRET_ACCESS_KEY": "s"},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert [orjson.loads(x)["line"] for x in p.stdout.splitlines()] == ["one", "two"]
