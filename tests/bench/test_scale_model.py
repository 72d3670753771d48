"""bench/scale_model.py: the sizing arithmetic on a known input, and the script on the
checked-in measurements (bench/measured.json)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("LOGFERRY_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
SCRIPT = REPO / "bench" / "scale_model.py"
MEASURED = REPO / "bench" / "measured.json"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_model"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sm = _load()

#: Round figures: 100,000 lines/s of 200-byte lines per process, 10 ms per object besides;
#: in CPU time, 10 µs per line and 5 ms per object.
KNOWN = sm.Measured(
    lines_per_s=100_000.0,
    mean_line_bytes=200.0,
    cpu_per_line_s=0.000_01,
    cpu_per_object_s=0.005,
    object_overhead_s=0.010,
    ledger_tx_per_s=1_000.0,
    ledger_threads=8,
    nproc=2,
    load_average=0.5,
    date="2026-01-01T00:00:00Z",
)


def _params(**overrides: object) -> object:
    """100 objects/s of 1,000 lines (200 kB), 4 per process, half busy, 4-core hosts."""
    base = {
        "objects_per_day": 8_640_000,
        "mean_object_bytes": 200_000,
        "concurrency": 4,
        "cores_per_host": 4,
        "target_utilisation": 0.5,
        "lease_seconds": 120.0,
        "visibility_timeout": 60.0,
        "batch_lines": 10_000,
        "batch_bytes": 2 * 1024 * 1024,
    }
    return sm.Params(**(base | overrides))


def test_workers_from_the_measured_rates() -> None:
    plan = sm.model(_params(), KNOWN)
    assert plan.objects_per_s == pytest.approx(100.0)
    assert plan.lines_per_object == pytest.approx(1_000.0)
    # 10 ms overhead + 1,000 lines at 100,000 lines/s = 20 ms: 50 objects/s per process.
    assert plan.process_seconds_per_object == pytest.approx(0.020)
    assert plan.objects_per_s_per_process == pytest.approx(50.0)
    assert plan.processes == 4  # 100 / (50 x 0.5)
    assert plan.utilisation == pytest.approx(0.5)
    # 100 objects/s x (5 ms + 1,000 x 10 µs) of CPU = 1.5 cores, 3 at half busy: one 4-core host.
    assert plan.cores == pytest.approx(3.0)
    assert plan.hosts == 1
    assert plan.processes_per_host == 4
    assert plan.in_flight == pytest.approx(8.0)  # 100/s x 4 objects x 20 ms


def test_hosts_follow_the_cpu_time() -> None:
    plan = sm.model(_params(objects_per_day=86_400_000, cores_per_host=8), KNOWN)
    assert plan.cores == pytest.approx(30.0)
    assert plan.hosts == 4  # 30 cores on 8-core hosts
    assert plan.processes == 40  # 1,000 / (50 x 0.5)
    assert plan.processes_per_host == 10


def test_ledger_calls_per_object_and_batch() -> None:
    plan = sm.model(_params(), KNOWN)
    assert plan.batches_per_object == 1
    assert plan.ledger_per_s["done?"] == pytest.approx(100.0)
    assert plan.ledger_per_s["get"] == pytest.approx(100.0)
    assert plan.ledger_per_s["claim"] == pytest.approx(100.0)
    assert plan.ledger_per_s["checkpoint"] == pytest.approx(100.0)
    assert plan.ledger_per_s["complete"] == pytest.approx(100.0)
    assert plan.ledger_per_s["lookup"] == pytest.approx(100.0)
    assert plan.ledger_per_s["renew"] == pytest.approx(4 / 40)  # 4 processes, every 120/3 s
    assert plan.ledger_per_s["renew_rows"] == pytest.approx(8 / 40)
    assert plan.ledger_tx_per_s == pytest.approx(600.1)
    assert plan.ledger_load == pytest.approx(0.6001)
    assert plan.ledger_connections == 24  # 4 processes x (4 threads + lease keeper + /readyz)
    assert any(w.startswith("ledger: 600 tx/s") for w in plan.warnings)


def test_checkpoints_follow_the_byte_limit_when_lines_are_long() -> None:
    long_lines = sm.Measured(**(asdict(KNOWN) | {"mean_line_bytes": 1_000.0}))
    plan = sm.model(_params(mean_object_bytes=5_000_000), long_lines)
    assert plan.lines_per_object == pytest.approx(5_000.0)
    assert plan.batches_per_object == math.ceil(5_000_000 / (2 * 1024 * 1024))


def test_round_trips_bound_a_process_until_concurrency_hides_them() -> None:
    slow = sm.model(_params(rtt_ms=10.0), KNOWN)
    # receive, 5 ledger calls, HEAD, GET, delete; and a sink request and a checkpoint per batch
    assert slow.round_trips == 11
    assert slow.objects_per_s_per_process == pytest.approx(4 / 0.130)  # 20 ms + 11 x 10 ms
    assert slow.processes == 7  # 100 / (30.8 x 0.5)
    hidden = sm.model(_params(rtt_ms=10.0, concurrency=16), KNOWN)
    assert hidden.objects_per_s_per_process == pytest.approx(50.0)


def test_queue_calls_and_cost_at_list_prices() -> None:
    plan = sm.model(_params(), KNOWN)
    assert plan.sqs_per_object["ReceiveMessage"] == 1  # the worker receives one at a time
    assert plan.sqs_per_object["ChangeMessageVisibility"] == 0  # done well within 20 s
    # A notification sent, received and deleted: 3 requests per object.
    assert plan.sqs_requests_per_day == pytest.approx(3 * 100 * 86_400)
    assert plan.cost_per_day["sqs"] == pytest.approx(25.92 * 0.40)
    assert plan.cost_per_day["s3_get_head"] == pytest.approx(17.28 * 0.40)


def test_slow_objects_are_extended() -> None:
    plan = sm.model(_params(mean_object_bytes=200_000_000, concurrency=1), KNOWN)
    # 1,000,000 lines at 100,000/s: 10 s each; extended every 20 s of a 60 s timeout: never.
    assert plan.sqs_per_object["ChangeMessageVisibility"] == 0
    plan = sm.model(_params(mean_object_bytes=2_000_000_000, concurrency=1), KNOWN)
    assert plan.sqs_per_object["ChangeMessageVisibility"] == 5  # 100 s // 20 s


def test_measured_file_names_each_figures_command_date_and_machine() -> None:
    doc = json.loads(MEASURED.read_text())
    for name in ("ship_throughput", "small_objects", "ledger_postgres"):
        figure = doc[name]
        assert figure["command"].startswith("PYTHONPATH=src python bench/"), name
        assert figure["date"].startswith("20"), name
        assert figure["machine"]["nproc"] >= 1, name


def test_script_prints_the_plan_of_the_checked_in_measurements() -> None:
    args = ["--objects-per-day", "10000000", "--mean-object-bytes", "100000"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    expected = sm.model(sm.params_with_engine_defaults(**doc["params"]), sm.load_measured(MEASURED))
    assert doc["plan"]["processes"] == expected.processes
    table = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60
    )
    assert f"processes                      {expected.processes}" in table.stdout


def test_script_needs_a_workload() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--objects-per-day or --lines-per-second" in proc.stderr


def test_table_says_when_processes_outnumber_cores() -> None:
    cheap = sm.Measured(**(asdict(KNOWN) | {"cpu_per_line_s": 1e-7, "cpu_per_object_s": 1e-4}))
    params = _params(cores_per_host=2)
    plan = sm.model(params, cheap)
    assert plan.hosts == 1
    assert plan.processes_per_host == 4
    assert "note: more processes than cores per host" in sm.render(params, cheap, plan)


def _scratch_schemas() -> set[str]:
    try:
        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'lf_scale_%'"
            ).fetchall()
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_URL} ({str(exc).splitlines()[0]}); start it with: "
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            pytrace=False,
        )
    return {r[0] for r in rows}


def test_measure_ledger_runs_in_a_scratch_schema_it_drops() -> None:
    """--measure's ledger figures: 1-8 runners ship every object once, in a schema of their own."""
    before = _scratch_schemas()
    doc = sm.measure_ledger(PG_URL, objects=16, checkpoints=1)
    assert [r["threads"] for r in doc["runs"]] == [1, 2, 4, 8]
    assert all(r["done"] == 16 for r in doc["runs"])
    assert all(r["tx_per_s"] > 0 for r in doc["runs"])
    assert doc["transactions_per_object"] == 4  # get, claim, one checkpoint, complete
    assert _scratch_schemas() == before


def test_docs_show_what_the_model_prints() -> None:
    """docs/scaling.md's sizing output is the script's, on the checked-in measurements."""
    text = (REPO / "docs" / "scaling.md").read_text()
    blocks = re.findall(
        r"```console\n\$ python bench/scale_model.py ([^\n]*)\n(.*?)\n```", text, re.S
    )
    assert len(blocks) == 2
    for args, shown in blocks:
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *args.split()],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        assert proc.stdout.rstrip() == shown, args
