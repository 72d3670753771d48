"""Secrets never reach logs, errors, the ledger, status or errors output, even at -vv."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.conftest import run_cli

KEY = "ingest-SECRET-4f9a1c"
HMAC = "hmac-SECRET-77e2b0"
PASSWORD = "pg-SECRET-1d3e5f"


def test_no_secret_anywhere(s3, bucket, s3_endpoint, tmp_path: Path, mezmo) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="a.log", Body=b"one\ntwo\n")
    s3.put_object(Bucket=bucket, Key="b.log.gz", Body=gzip.compress(b"x\n")[:-4])
    env = {
        "LOGDNA_INGESTION_KEY": KEY,  # wrong for this server: every request gets a 401
        "COS_ENDPOINT": s3_endpoint,
        "COS_HMAC_ACCESS_KEY_ID": "hmac-id",
        "COS_HMAC_SECRET_ACCESS_KEY": HMAC,
    }
    led = tmp_path / "l.db"
    outputs = []
    runs = [
        # 401 from the sink, a corrupt object, debug logging on
        ["-vv", "ship", f"cos://{bucket}", "--to", mezmo.url, "--to", str(tmp_path / "o"),
         "--ledger", str(led), "--json"],
        # a sink URL and a source URL carrying credentials are refused without echoing them
        ["ship", f"cos://{bucket}", "--to", f"mezmo+https://user:{KEY}@example.invalid/logs/ingest",
         "--ledger", str(led)],
        ["ship", f"s3://id:{HMAC}@{bucket}", "--to", str(tmp_path / "o"), "--ledger", str(led)],
        ["ship", f"cos://{bucket}", "--to", f"mezmo+https://example.invalid/logs/ingest?key={KEY}",
         "--ledger", str(led)],
        # a ledger URL with a password for a server that is not there
        ["status", "--ledger", f"postgresql://logferry:{PASSWORD}@127.0.0.1:1/none"],
        ["ship", f"cos://{bucket}", "--to", str(tmp_path / "o"),
         "--ledger", f"postgresql://logferry:{PASSWORD}@127.0.0.1:1/none"],
        ["-vv", "status", "--ledger", str(led), "--json"],
        ["-vv", "status", "--ledger", str(led)],
        ["-vv", "errors", "--ledger", str(led)],
        ["errors", "--ledger", str(led), "--json"],
        ["-vv", "drain", "--to", mezmo.url, "--ledger", str(led), "--source", f"cos://{bucket}"],
    ]  # fmt: skip
    for args in runs:
        p = run_cli(*args, env=env)
        assert p.returncode != 0 or args[-1] == "--json" or "status" in args or "errors" in args
        outputs.append(p.stdout + p.stderr)
    assert any("401" in o for o in outputs)  # the failures really happened
    assert any("Traceback" not in o for o in outputs)
    everything = "\n".join(outputs) + led.read_bytes().decode("latin-1")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            everything += path.read_bytes().decode("latin-1")
    for secret in (KEY, HMAC, PASSWORD):
        assert secret not in everything
    assert "Traceback" not in everything
