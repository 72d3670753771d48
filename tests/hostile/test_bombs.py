"""Invariant 7: hostile objects cost bounded memory and fail alone with a one-line reason.

Each bomb is decoded in a subprocess (``tests.hostile.measure``) whose peak RSS is read from
``VmHWM``, so the test runner's own memory does not blur the figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import bombs

#: Peak RSS a decoding process may reach on any bomb (the interpreter alone is ~60 MB).
PEAK_MB = 200
_ROOT = Path(__file__).resolve().parents[2]


def _decode(path: Path, fmt: str, **options: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{_ROOT / 'src'}{os.pathsep}{_ROOT}"}
    args = [sys.executable, "-m", "tests.hostile.measure", str(path), fmt]
    args += [f"{k}={v}" for k, v in options.items()]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["peak_mb"] < PEAK_MB, result
    return result


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    directory = tmp_path_factory.mktemp("bombs")
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            cache[name] = getattr(bombs, name)(directory)
        return cache[name]

    return make


def test_gzip_gigabyte_line_is_truncated(made: Callable[[str], Path]) -> None:
    # The ratio check off: the line cap alone must bound memory.
    out = _decode(made("gzip_zeros_line"), "lines", max_decompression_ratio=0)
    assert out["error"] is None
    assert out["records"] == 1
    assert out["counters"] == {"truncated_lines": 1}
    assert 1 << 20 <= out["longest"] < (1 << 20) + 64


def test_zstd_long_line_is_truncated_then_next_line_ships(made: Callable[[str], Path]) -> None:
    out = _decode(made("zstd_long_line"), "lines", max_decompression_ratio=0, max_line_bytes=4096)
    assert out["error"] is None
    assert out["records"] == 2
    assert out["counters"] == {"truncated_lines": 1}


def test_csv_long_line_is_truncated(made: Callable[[str], Path]) -> None:
    out = _decode(made("csv_long_line"), "csv", max_decompression_ratio=0)
    assert out["error"] is None
    assert out["records"] == 2  # the row, then the long one (its head), shipped raw
    assert out["counters"] == {"truncated_lines": 1, "malformed": 1}
    assert out["longest"] < (1 << 20) + 64


def test_zstd_bomb_fails_on_the_ratio(made: Callable[[str], Path]) -> None:
    out = _decode(made("zstd_long_line"), "ndjson")
    assert "expands more than 1000:1" in out["error"]
    assert "--max-decompression-ratio" in out["error"]
    assert "\n" not in out["error"]


def test_absolute_decompressed_limit(made: Callable[[str], Path]) -> None:
    out = _decode(made("gzip_zeros_line"), "lines", max_decompressed_bytes=10 << 20)
    assert "--max-decompressed-bytes" in out["error"]


def test_empty_lines_bomb(made: Callable[[str], Path]) -> None:
    out = _decode(made("empty_lines"), "lines", max_decompression_ratio=0)
    assert out == {**out, "records": 0, "error": None}


def test_big_json_array_streams(made: Callable[[str], Path]) -> None:
    out = _decode(made("json_array"), "json")
    assert out["error"] is None
    assert out["records"] > 2_000_000


def test_deep_json_fails_alone(made: Callable[[str], Path]) -> None:
    for fmt in ("json", "cloudtrail", "ibm-vpc-flow"):
        out = _decode(made("deep_json"), fmt)
        assert out["error"] == "JSON nested deeper than 128 levels; such a document is refused"
    # One line: the event formats read it as NDJSON and ship it raw, counted.
    out = _decode(made("deep_json"), "azure-ad")
    assert out["counters"] == {"malformed": 1}
