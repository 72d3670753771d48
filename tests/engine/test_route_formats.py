"""Every source decodes through the same codec step: a route's ``format:`` on tail:// and
cloudwatch:// works as it does for buckets (invariant 8)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from logferry.config import parse_pipeline
from logferry.ledger import SQLiteLedger
from logferry.pipeline import Pipeline
from tests.cloudwatch.conftest import logs, logs_endpoint, prefix, put  # noqa: F401

EVENT = '{"msg": "hello", "timestamp": "2024-05-01T00:00:00Z"}'


def _records(out: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(out.rglob("*.jsonl")):
        rows += [json.loads(x) for x in path.read_text().splitlines()]
    return rows


def _run(yaml_text: str, tmp_path: Path, env: dict[str, str] | None = None) -> None:
    config = parse_pipeline(yaml_text, "test.yaml", env or {})
    pipeline = Pipeline(config)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        results = pipeline.run_once(ledger)
    finally:
        pipeline.close()
        ledger.close()
    assert all(r.ok for r in results), [r.failed for r in results]


def test_tail_routes_pick_their_own_format(tmp_path: Path) -> None:
    logs_dir = tmp_path / "logs"
    for sub in ("json", "plain"):
        (logs_dir / sub).mkdir(parents=True)
        # Different first lines: files with the same first line are one file renamed.
        (logs_dir / sub / "app.log").write_text(f"{sub}\n{EVENT}\n")
    out_json, out_plain = tmp_path / "out-json", tmp_path / "out-plain"
    _run(
        f"""
sinks:
  json: {{url: "file://{out_json}"}}
  plain: {{url: "file://{out_plain}"}}
sources:
  files:
    url: "tail://{logs_dir}/**/*.log"
    routes:
      - {{prefix: "{logs_dir}/json/", format: ndjson, sinks: [json]}}
      - {{prefix: "", format: lines, sinks: [plain]}}
""",
        tmp_path,
    )
    _, parsed = _records(out_json)
    _, raw = _records(out_plain)
    assert parsed["timestamp"] == "2024-05-01T00:00:00.000Z"  # from the event (ndjson)
    assert raw["timestamp"] != parsed["timestamp"]  # the file's time (lines)
    assert raw["line"] == parsed["line"] == EVENT


def test_cloudwatch_routes_pick_their_own_format(
    tmp_path: Path,
    logs: Any,  # noqa: F811
    logs_endpoint: str,  # noqa: F811
    prefix: str,  # noqa: F811
) -> None:
    events = put(logs, prefix + "app", "s1", [EVENT, "not json"])
    put(logs, prefix + "plain", "s1", [EVENT])
    out_json, out_plain = tmp_path / "out-json", tmp_path / "out-plain"
    _run(
        f"""
sinks:
  json: {{url: "file://{out_json}"}}
  plain: {{url: "file://{out_plain}"}}
sources:
  cw:
    url: "cloudwatch://{prefix}"
    endpoint_url: "{logs_endpoint}"
    routes:
      - {{prefix: "{prefix}app:", format: ndjson, sinks: [json]}}
      - {{prefix: "", format: lines, sinks: [plain]}}
""",
        tmp_path,
    )
    parsed, malformed = _records(out_json)
    assert parsed["timestamp"] == "2024-05-01T00:00:00.000Z"  # the event's own field
    # A line the format cannot parse keeps the event's time, as it does on buckets.
    assert malformed["line"] == "not json"
    assert malformed["timestamp"].startswith(
        __import__("time").strftime(
            "%Y-%m-%d", __import__("time").gmtime(events[1]["timestamp"] / 1000)
        )
    )
    (plain,) = _records(out_plain)
    assert plain["line"] == EVENT
    assert plain["timestamp"] != parsed["timestamp"]  # lines: the event's time
