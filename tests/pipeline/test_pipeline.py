"""Pipeline files: validation with line numbers, routing, ship -c, handlers, the run daemon."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

import logferry
from logferry.config import parse_pipeline
from logferry.errors import ConfigError
from logferry.pipeline import Pipeline
from logferry.sinks.base import Batching
from tests.conftest import IBM_FIXTURES, run_cli
from tests.helpers import wait_for

#: An import path with logferry on it and nothing else (absolute: tests run from other folders).
LOGFERRY_ONLY = {"PYTHONPATH": str(Path(logferry.__file__).resolve().parents[1])}


def write_config(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture()
def bucket_dir(tmp_path: Path) -> Path:
    b = tmp_path / "bucket"
    (b / "ibm_vpc_flowlogs_v1" / "x").mkdir(parents=True)
    shutil.copy(IBM_FIXTURES / "00000911.gz", b / "ibm_vpc_flowlogs_v1" / "x" / "00000911.gz")
    (b / "tmp").mkdir()
    (b / "tmp" / "scratch.log").write_text("ignore me\n")
    (b / "app").mkdir()
    (b / "app" / "broken.json").write_text('{"not": "closed"\nsecond line\n')
    (b / "app" / "events.ndjson").write_text('{"action": "login"}\n{"action": "logout"}\n')
    return b


def routed_config(tmp_path: Path, bucket_dir: Path, extra: str = "") -> Path:
    return write_config(
        tmp_path / "p.yaml",
        f"""\
        ledger: sqlite:///{tmp_path}/l.db
        interval: 0.3
        sinks:
          flows: {{url: "file://{tmp_path}/flows"}}
          rest: {{url: "${{REST_DIR:-{tmp_path}/rest}}"}}
        sources:
          bucket:
            url: {bucket_dir}
            routes:
              - {{prefix: ibm_vpc_flowlogs_v1/, format: ibm-vpc-flow, sinks: [flows]}}
              - {{prefix: tmp/, sinks: drop}}
              - {{prefix: app/, format: [json, lines], sinks: [rest]}}
        {extra}""",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: {}\n", "p.yaml:1: sources: no sources"),
        ("sources:\n  a:\n    url: s3://b\n    type: tail\n", "p.yaml:3: sources.a: type 'tail'"),
        (
            "sources:\n  a:\n    url: /x\n    sinks: [nope]\n",
            "p.yaml:4: sources.a.sinks: unknown sink 'nope'",
        ),
        (
            "sinks:\n  f: {url: /o}\nsources:\n  a:\n    url: /x\n    routes:\n"
            "      - {prefix: a/, sinks: [f]}\n      - {prefix: b/, format: xml, sinks: [f]}\n",
            "p.yaml:8: sources.a.routes.1.format: unknown format 'xml'",
        ),
        ("sources:\n  a:\n    url: /x\n    sink: [f]\n", "p.yaml:4: sources.a.sink: Extra inputs"),
        (
            "sinks:\n  f: {url: /o}\nsources:\n  a: {url: /x, sinks: [f]}\ninterval: -1\n",
            "p.yaml:5: interval",
        ),
        ("sources:\n  a: {url: '${NOPE_NOT_SET}'}\n", "p.yaml:2: ${NOPE_NOT_SET} is not set"),
        ("sources: [unclosed\n", "p.yaml:2: not valid YAML"),
        ("", "p.yaml: the file is empty"),
        (
            "sinks:\n  p: {type: python}\nsources:\n  a: {url: /x, sinks: [p]}\n",
            "p.yaml:2: sinks.p: a python sink needs",
        ),
    ],
)
def test_errors_name_the_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pipeline(text, "p.yaml", env={})
    assert str(info.value).startswith(expected), str(info.value)


def test_a_source_without_sinks_goes_to_the_embedded_store() -> None:
    cfg = parse_pipeline(
        "sources:\n  app: {url: 'tail:///var/log/app/*.log', format: api-request}\n",
        env={},
    )
    assert cfg.sources["app"].sinks == ["store"]
    assert cfg.sinks["store"].url is not None
    assert cfg.sinks["store"].url.startswith("duckdb:///")


def test_env_interpolation_and_defaults() -> None:
    cfg = parse_pipeline(
        "sinks:\n  m: {url: 'mezmo+https://${HOST}/logs/ingest', app: '${APP:-flows}'}\n"
        "sources:\n  a: {url: /x, sinks: [m]}\n",
        env={"HOST": "logs.example.com"},
    )
    assert cfg.sinks["m"].url == "mezmo+https://logs.example.com/logs/ingest"
    assert cfg.sinks["m"].app == "flows"


def test_validate_and_ship_with_routes(tmp_path: Path, bucket_dir: Path) -> None:
    cfg = routed_config(tmp_path, bucket_dir)
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "app/ → json|lines → rest" in p.stdout
    assert "tmp/ → auto → drop" in p.stdout
    p = run_cli("ship", "-c", str(cfg), "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])
    assert summary["objects"] == 4
    assert summary["counters"]["dropped"] == 1
    flows = (tmp_path / "flows" / "ibm_vpc_flowlogs_v1" / "x" / "00000911.gz.jsonl").read_text()
    assert len(flows.splitlines()) == 2
    # the format chain fell back from json to lines for the broken document
    broken = (tmp_path / "rest" / "app" / "broken.json.jsonl").read_text().splitlines()
    assert [orjson.loads(x)["line"] for x in broken] == ['{"not": "closed"', "second line"]
    assert not (tmp_path / "rest" / "tmp").exists()
    assert not (tmp_path / "flows" / "tmp").exists()
    # an object no route matches is an error in the summary, never silently skipped
    (bucket_dir / "stray.log").write_text("where do I go?\n")
    p = run_cli("ship", "-c", str(cfg), "--json")
    assert p.returncode == 1
    failed = json.loads(p.stdout.splitlines()[-1])["failed"]
    assert failed[0]["key"] == "stray.log"
    assert "no route matches" in failed[0]["error"]
    assert run_cli("ship", "-c", str(cfg), str(bucket_dir)).returncode == 2


HANDLER = """
class Count:
    def setup(self, args):
        self.counts = {}
        self.fail_on = args.get("fail_on")

    def recv(self, meta, record):
        if isinstance(record, dict):
            action = record.get("action")
            if action == self.fail_on:
                raise RuntimeError("refusing " + action)
            self.counts[action] = self.counts.get(action, 0) + 1
        assert meta["key"] and meta["timestamp"].endswith("Z") and meta["format"]

    def result(self):
        return self.counts
"""


def test_python_handlers(tmp_path: Path, bucket_dir: Path) -> None:
    (tmp_path / "myhandlers.py").write_text(HANDLER)
    cfg = write_config(
        tmp_path / "h.yaml",
        f"""\
        ledger: sqlite:///{tmp_path}/h.db
        sinks:
          count: {{type: python, handler: "myhandlers:Count"}}
          picky: {{type: python, handler: "myhandlers:Count", args: {{fail_on: logout}}}}
        sources:
          apps:
            url: {bucket_dir}
            routes:
              - {{prefix: app/events, format: ndjson, sinks: [count]}}
              - {{prefix: app/picky, format: ndjson, sinks: [picky]}}
              - {{prefix: ibm_vpc_flowlogs_v1/, sinks: [picky, count]}}
              - {{prefix: "", sinks: drop}}
        """,
    )
    env = {"PYTHONPATH": str(tmp_path)}
    assert run_cli("validate", "-c", str(cfg), env=env).returncode == 0
    p = run_cli("ship", "-c", str(cfg), "--json", env=env)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.splitlines()[-1])
    # flows carry "action": "accepted" too; the picky handler saw the same flows
    assert summary["handlers"] == {
        "count": {"login": 1, "logout": 1, "accepted": 2},
        "picky": {"accepted": 2},
    }
    # an exception in recv fails that object only
    (bucket_dir / "app" / "picky.ndjson").write_text('{"action": "logout"}\n')
    p = run_cli("ship", "-c", str(cfg), "--json", env=env)
    assert p.returncode == 1
    (failure,) = json.loads(p.stdout.splitlines()[-1])["failed"]
    assert failure["key"] == "app/picky.ndjson"
    assert "RuntimeError: refusing logout" in failure["error"]
    # handler modules import from the pipeline file's folder, wherever logferry runs from
    p = run_cli("ship", "-c", str(cfg), "--json", cwd="/", env=LOGFERRY_ONLY)
    assert "picky" in json.loads(p.stdout.splitlines()[-1])["handlers"], p.stderr
    (tmp_path / "myhandlers.py").unlink()
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 2
    assert "cannot import myhandlers" in p.stderr
    assert f"looked in {tmp_path}" in p.stderr


def test_handler_package_beside_the_pipeline_file(tmp_path: Path, bucket_dir: Path) -> None:
    here = tmp_path / "conf"
    (here / "handlers").mkdir(parents=True)
    (here / "handlers" / "__init__.py").write_text("")
    (here / "handlers" / "counting.py").write_text(HANDLER)
    cfg = write_config(
        here / "pipeline.yaml",
        f"""        ledger: sqlite:///{tmp_path}/h.db
        sinks:
          count: {{type: python, handler: "handlers.counting:Count"}}
        sources:
          apps: {{url: "{bucket_dir}/app/events.ndjson", format: ndjson, sinks: [count]}}
        """,
    )
    cfg.write_text(cfg.read_text().replace("/app/events.ndjson", ""))
    assert run_cli("validate", "-c", "pipeline.yaml", cwd=here, env=LOGFERRY_ONLY).returncode == 0
    p = run_cli("ship", "-c", str(cfg), "--json", cwd="/", env=LOGFERRY_ONLY)
    assert p.returncode == 1  # app/broken.json is not ndjson; the handler saw the others
    assert json.loads(p.stdout.splitlines()[-1])["handlers"]["count"]["login"] == 1


def test_validate_reports_every_problem(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "bad.yaml",
        """        workers: 0
        sinks:
          out:
            url: file:///tmp/x
            colour: blue
        sources:
          a:
            url: s3://b/p
            sinks: [out]
            since: last tuesday
          b:
            url: tail:///var/log/*.log
            sinks: [out]
            until: 2h ago
        """,
    )
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 2
    assert p.stderr.splitlines() == [
        f"error: {cfg}:1: workers: Input should be greater than or equal to 1",
        f"error: {cfg}:5: sinks.out.colour: Extra inputs are not permitted",
        f"error: {cfg}:10: sources.a.since: cannot read the time 'last tuesday': use 5m, 2h "
        "ago, 1d, ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds/milliseconds",
        f"error: {cfg}:12: sources.b: `since` and `until` select objects of buckets, not streams",
    ]
    # reference problems, and then the deeper checks, are reported all at once too
    cfg.write_text(
        textwrap.dedent(
            """            sinks:
              out: {url: "file:///tmp/x"}
              h: {type: python, handler: "nowhere:Handler"}
            sources:
              a: {url: "s3://b/p", sinks: [nope]}
              b: {url: "s3://b/q", format: [json, nonsense], sinks: [out]}
            """
        )
    )
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 2
    assert [line.split(": ", 3)[1:3] for line in p.stderr.splitlines()] == [
        [f"{cfg}:5", "sources.a.sinks"],
        [f"{cfg}:6", "sources.b.format"],
    ]
    cfg.write_text(cfg.read_text().replace("nope", "out").replace(", nonsense", ""))
    cfg.write_text(cfg.read_text() + '  c: {url: "cloudwatch://x?colour=blue", sinks: [out]}\n')
    p = run_cli("validate", "-c", str(cfg))
    assert p.returncode == 2
    assert [line.split(": ", 3)[1:3] for line in p.stderr.splitlines()] == [
        [f"{cfg}:3", "sinks.h.handler"],
        [f"{cfg}:7", "sources.c.url"],
    ]


def test_run_daemon_reload_and_stop(tmp_path: Path, bucket_dir: Path) -> None:
    cfg = routed_config(tmp_path, bucket_dir)
    proc = subprocess.Popen(
        [sys.executable, "-m", "logferry", "run", "-c", str(cfg), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )  # fmt: skip
    try:
        flows = tmp_path / "flows"
        wait_for(
            lambda: (flows / "ibm_vpc_flowlogs_v1" / "x" / "00000911.gz.jsonl").exists(), timeout=20
        )
        # a new object is picked up by a later listing
        (bucket_dir / "app" / "late.ndjson").write_text('{"action": "late"}\n')
        wait_for(lambda: (tmp_path / "rest" / "app" / "late.ndjson.jsonl").exists(), timeout=20)
        # an invalid configuration is rejected, the old one keeps running
        good = cfg.read_text()
        cfg.write_text(good.replace("sinks: [rest]", "sinks: [missing]"))
        proc.send_signal(signal.SIGHUP)
        (bucket_dir / "app" / "later.ndjson").write_text('{"action": "later"}\n')
        wait_for(lambda: (tmp_path / "rest" / "app" / "later.ndjson.jsonl").exists(), timeout=20)
        # a valid new configuration is applied: app/ now goes to the flows sink
        cfg.write_text(good.replace("sinks: [rest]", "sinks: [flows]"))
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        (bucket_dir / "app" / "latest.ndjson").write_text('{"action": "latest"}\n')
        wait_for(lambda: (flows / "app" / "latest.ndjson.jsonl").exists(), timeout=20)
        assert not (tmp_path / "rest" / "app" / "latest.ndjson.jsonl").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "reload rejected" in err
    assert "unknown sink 'missing'" in err
    assert "configuration reloaded" in err
    assert all(json.loads(line)["failed"] == [] for line in out.splitlines())


def test_a_sink_may_batch_on_its_own(tmp_path: Path) -> None:
    text = f"""
batch_lines: 500
batch_wait: 2
sinks:
  quick: {{url: "file://{tmp_path}/q", batch_wait: 0.5}}
  plain: {{url: "file://{tmp_path}/p"}}
sources:
  logs: {{url: "tail://{tmp_path}/*.log", sinks: [quick, plain]}}
"""
    pipeline = Pipeline(parse_pipeline(text, "p.yaml", env={}))
    try:
        assert pipeline.sinks["quick"].batching == Batching(500, 2 * 1024 * 1024, 0.5)
        assert pipeline.sinks["plain"].batching is None  # the run's batching
    finally:
        pipeline.close()
    with pytest.raises(ConfigError, match="batch_lines"):
        parse_pipeline(text.replace("batch_wait: 0.5", "batch_lines: 0"), "p.yaml", env={})
