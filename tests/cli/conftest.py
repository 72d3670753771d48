"""Packages built once per session (they download wheels), shared by the package and deploy tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from logferry.cli.package import package

# The zip's native wheels must load here: build for this interpreter.
HERE = f"{sys.version_info.major}.{sys.version_info.minor}"

S3_TO_MEZMO = """\
sinks:
  mezmo:
    url: logdna:us-south
sources:
  flowlogs:
    url: s3://flow-logs-bucket/ibm_vpc_flowlogs_v1/
    format: ibm-vpc-flow
    sinks: [mezmo]
"""


@pytest.fixture(scope="session")
def s3_mezmo_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline file: one S3 source to Mezmo, as the Lambda deployment runs it."""
    path = tmp_path_factory.mktemp("pipeline") / "pipeline.yaml"
    path.write_text(S3_TO_MEZMO)
    return path


@pytest.fixture(scope="session")
def lean_zip(
    tmp_path_factory: pytest.TempPathFactory, s3_mezmo_pipeline: Path
) -> tuple[Path, dict[str, Any]]:
    """``logferry package lambda -c`` for the S3 -> Mezmo pipeline, built for this Python."""
    if os.uname().machine != "x86_64":  # pragma: no cover - the wheels must load on this host
        pytest.fail("this test builds x86_64 wheels and imports them: run it on x86_64")
    out = tmp_path_factory.mktemp("lambda") / "logferry-lambda.zip"
    args = ["lambda", str(out), "-c", str(s3_mezmo_pipeline), "--python-version", HERE, "--json"]
    result = CliRunner().invoke(package, args, env={"LOGFERRY_LEDGER": None})
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)
