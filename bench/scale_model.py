"""Sizing model: how many logferry processes and hosts a workload needs, and what it costs.

The model is arithmetic on figures measured on a real machine, never on guesses:

* ``bench/measured.json`` holds the measurements, each with its command, date and machine:
  one process's throughput on a large object (``bench/ship_throughput.py``), its per-object
  overhead on many small objects, and the PostgreSQL ledger's cost per object
  (claim, checkpoints, done mark) at 1-8 concurrent runners. ``--measure`` runs them again.
* The ledger calls per object are counted from the engine's code (see ``LEDGER_CALLS``), the
  batch sizes and lease length come from ``ShipOptions``' defaults, the visibility timeout
  from ``QueueOptions``.
* Processes follow from the wall-clock rates (what one process did, with the machine as busy
  as it was: the measurements record the load average), hosts from the CPU time, which other
  work on the machine hardly changes.
* Queue limits and prices are public list prices, kept as constants with their source and
  date (``LIST_PRICES``, ``LIMITS``); they change, so check them before you budget.

Usage::

    python bench/scale_model.py --objects-per-day 10000000 --mean-object-bytes 100000
    python bench/scale_model.py --lines-per-second 1000000 --mean-object-bytes 10000000
    python bench/scale_model.py --objects-per-day 10000000 --json
    PYTHONPATH=src python bench/scale_model.py --measure   # rewrite bench/measured.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import logging
import math
import os
import platform
import resource
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
DEFAULT_MEASURED = HERE / "measured.json"
DAY = 86_400

#: Public list prices (USD, US East, standard tiers, free tiers ignored). They change: check
#: the source pages before you budget. The figures are AWS's published rates as quoted by
#: third-party summaries dated 2026-03-14 and 2026-06-13; they were not re-read from AWS on
#: the date the model was written (2026-11-29).
LIST_PRICES: dict[str, dict[str, Any]] = {
    "sqs_standard_per_million_requests": {
        "usd": 0.40,
        "source": "https://aws.amazon.com/sqs/pricing/ (first 100 billion requests/month)",
        "date": "2026-06-13",
        "note": "each 64 KiB chunk of a payload is billed as one request; empty receives count",
    },
    "s3_standard_get_per_million_requests": {
        "usd": 0.40,
        "source": "https://aws.amazon.com/s3/pricing/ (GET, SELECT and all other requests: "
        "$0.0004 per 1,000); HEAD is billed as GET",
        "date": "2026-06-13",
    },
}

#: Published service limits the model checks against.
LIMITS: dict[str, dict[str, Any]] = {
    "sqs_standard_in_flight": {
        "value": 120_000,
        "source": "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
        "quotas-queues.html",
        "note": "approximate; long polling returns no error when reached, receives just stall",
    },
    "sqs_standard_throughput": {
        "value": None,
        "source": "same page: standard queues support a nearly unlimited number of calls/s",
    },
    "sqs_max_message_bytes": {
        "value": 262_144,
        "source": "SQS MaximumMessageSize attribute: default 256 KiB, settable up to 1 MiB",
    },
    "sqs_batch_entries": {"value": 10, "source": "ReceiveMessage, SendMessageBatch: 10"},
    "jetstream_max_ack_pending": {
        "value": 1_000,
        "source": "https://docs.nats.io/nats-concepts/jetstream/consumers (MaxAckPending "
        "default): a consumer's messages in flight, shared by every worker bound to it",
    },
}

#: Ledger calls per object on the worker's path: ``engine/messages.py`` (MessageHandler) →
#: ``engine/items.py`` (ship_work_items) → ``ObjectRunner`` in ``key`` mode, read from
#: ``engine/objects.py``, ``engine/leases.py``, ``ledger/sql.py`` and ``ledger/postgres.py``
#: (the worker as of its branch's commit 456329b). Each is one transaction.
LEDGER_CALLS: dict[str, str] = {
    "done?": "read: MessageHandler._done → ledger.lookup (a duplicate delivery?), 1 per object",
    "get": "read: ObjectRunner._ship_keys → ledger.get (done already?), 1 per object",
    "claim": "write: ledger.claim, SELECT … FOR UPDATE then INSERT or UPDATE, 1 per object",
    "checkpoint": "write: ledger.checkpoint after every sink acknowledged a batch, 1 per batch",
    "complete": "write: ledger.complete (the done mark), 1 per object",
    "lookup": "read: ship_work_items → ledger.lookup after the run, 1 per message",
    "renew": "write: LeaseKeeper every lease/3 per process, one UPDATE per claim held",
}

#: Calls one object waits for in turn on the worker's path, each a network round trip when
#: the service is remote (``--rtt-ms``); per object, and per batch. A consumer thread
#: receives one message at a time (``engine/worker.py``: ``receive(1, …)``).
ROUND_TRIPS_PER_OBJECT: dict[str, int] = {
    "queue receive": 1,
    "ledger done?, get, claim, complete, lookup": 5,
    "S3 HEAD (_ship_keys)": 1,
    "S3 GET (first byte; the body streams)": 1,
    "queue delete (ack)": 1,
}
ROUND_TRIPS_PER_BATCH: dict[str, int] = {"sink request": 1, "ledger checkpoint": 1}


# -- the measurements ---------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """The per-process and per-ledger figures the model starts from."""

    #: One process, one large object, lines per second (``ship_throughput.py``).
    lines_per_s: float
    #: Mean uncompressed line size of that object, bytes.
    mean_line_bytes: float
    #: CPU seconds per line of that process (CPU time, unlike wall time, hardly changes when
    #: other work shares the machine).
    cpu_per_line_s: float
    #: CPU seconds each small object cost beyond its lines (process start-up included).
    cpu_per_object_s: float
    #: Seconds of one process's time each object costs beyond its lines (small objects).
    object_overhead_s: float
    #: The most ledger transactions per second the PostgreSQL measurement reached.
    ledger_tx_per_s: float
    #: Concurrent runners at which it reached them.
    ledger_threads: int
    #: Cores of the machine the figures come from, and its load average (1 min) then.
    nproc: int
    load_average: float
    date: str


def load_measured(path: Path) -> Measured:
    """Read ``path`` (see ``--measure``) into the figures the model uses."""
    doc = json.loads(path.read_text())
    ship = doc["ship_throughput"]
    small = doc["small_objects"]
    ledger = doc["ledger_postgres"]
    best = max(ledger["runs"], key=lambda r: r["tx_per_s"])
    return Measured(
        lines_per_s=ship["lines_per_s"],
        mean_line_bytes=ship["mean_line_bytes"],
        cpu_per_line_s=ship["cpu_seconds"] / ship["lines"],
        cpu_per_object_s=small["cpu_per_object_s"],
        object_overhead_s=small["object_overhead_s"],
        ledger_tx_per_s=best["tx_per_s"],
        ledger_threads=best["threads"],
        nproc=ship["machine"]["nproc"],
        load_average=ship["machine"]["load_average"][0],
        date=ship["date"],
    )


# -- the model -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """The workload and the deployment choices (the command line's options)."""

    objects_per_day: float | None = None
    lines_per_second: float | None = None
    mean_object_bytes: float = 100_000.0
    lines_per_object: float | None = None
    concurrency: int = 4
    cores_per_host: int = 2
    target_utilisation: float = 0.7
    #: Messages per ReceiveMessage: the worker asks for one (SQS allows 10).
    messages_per_receive: int = 1
    visibility_timeout: float = 60.0
    lease_seconds: float = 120.0
    batch_lines: int = 10_000
    batch_bytes: int = 2 * 1024 * 1024
    #: Network round trip to S3, the sink and the ledger, ms; 0 is the loopback measured.
    rtt_ms: float = 0.0


@dataclass
class Plan:
    """What the model computed for one workload."""

    objects_per_s: float
    lines_per_s: float
    bytes_per_s: float
    lines_per_object: float
    batches_per_object: int
    process_seconds_per_object: float
    objects_per_s_per_process: float
    processes: int
    #: How busy the processes are at the mean rate (at most the target).
    utilisation: float
    #: CPU cores the workload keeps busy at the target utilisation.
    cores: float
    processes_per_host: int
    hosts: int
    in_flight: float
    object_wall_seconds: float
    round_trips: int
    ledger_per_s: dict[str, float] = field(default_factory=dict)
    ledger_tx_per_s: float = 0.0
    ledger_load: float = 0.0
    ledger_connections: int = 0
    sqs_per_object: dict[str, float] = field(default_factory=dict)
    sqs_requests_per_day: float = 0.0
    jetstream_per_object: dict[str, float] = field(default_factory=dict)
    s3_requests_per_day: float = 0.0
    cost_per_day: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def params_with_engine_defaults(**overrides: Any) -> Params:
    """``Params`` whose batch sizes, lease and visibility timeout are the engine's defaults."""
    try:
        from logferry.config import ShipOptions
        from logferry.queues.base import QueueOptions
    except ImportError:  # run without PYTHONPATH=src: the dataclass defaults mirror them
        return Params(**overrides)
    ship, queue = ShipOptions(), QueueOptions()
    defaults = {
        "concurrency": ship.workers,
        "lease_seconds": ship.lease_seconds,
        "batch_lines": ship.batch_lines,
        "batch_bytes": ship.batch_bytes,
        "visibility_timeout": queue.visibility_timeout,
    }
    return Params(**(defaults | overrides))


def model(p: Params, m: Measured) -> Plan:
    """Size a deployment for ``p`` from the figures ``m``."""
    lines_per_object = p.lines_per_object or max(1.0, p.mean_object_bytes / m.mean_line_bytes)
    if p.objects_per_day is not None:
        objects_per_s = p.objects_per_day / DAY
        lines_per_s = objects_per_s * lines_per_object
    elif p.lines_per_second is not None:
        lines_per_s = p.lines_per_second
        objects_per_s = lines_per_s / lines_per_object
    else:
        raise ValueError("give --objects-per-day or --lines-per-second")
    object_bytes = lines_per_object * m.mean_line_bytes
    batches = max(
        math.ceil(lines_per_object / p.batch_lines), math.ceil(object_bytes / p.batch_bytes), 1
    )
    per_object = m.object_overhead_s + lines_per_object / m.lines_per_s
    waits = sum(ROUND_TRIPS_PER_OBJECT.values()) + batches * sum(ROUND_TRIPS_PER_BATCH.values())
    # A process is a closed system of ``concurrency`` objects, each needing ``per_object`` of
    # the process and ``waits`` round trips. Its throughput bound is the lesser of what the
    # process can do (1 / per_object) and what the objects in flight can (concurrency / their
    # own time); with remote services, concurrency is what hides the round trips.
    alone = per_object + waits * p.rtt_ms / 1000
    per_process = min(1.0 / per_object, p.concurrency / alone)
    wall = max(alone, per_object * p.concurrency)
    processes = max(1, math.ceil(objects_per_s / (per_process * p.target_utilisation)))
    # Hosts by CPU time: what the objects cost in CPU seconds, at the target utilisation.
    cores = objects_per_s * (m.cpu_per_object_s + lines_per_object * m.cpu_per_line_s)
    cores /= p.target_utilisation
    hosts = max(1, math.ceil(cores / p.cores_per_host))
    # Little's law: objects in flight = arrival rate x time each spends in a process.
    in_flight = objects_per_s * wall
    plan = Plan(
        objects_per_s=objects_per_s,
        lines_per_s=lines_per_s,
        bytes_per_s=lines_per_s * m.mean_line_bytes,
        lines_per_object=lines_per_object,
        batches_per_object=batches,
        process_seconds_per_object=per_object,
        objects_per_s_per_process=per_process,
        processes=processes,
        utilisation=objects_per_s / (processes * per_process),
        cores=cores,
        processes_per_host=math.ceil(processes / hosts),
        hosts=hosts,
        in_flight=in_flight,
        object_wall_seconds=wall,
        round_trips=waits,
    )
    _ledger(plan, p, m)
    _queues(plan, p)
    _cost(plan)
    return plan


def _ledger(plan: Plan, p: Params, m: Measured) -> None:
    """Ledger transactions per second, by call (``LEDGER_CALLS``)."""
    rate = plan.objects_per_s
    renew_round = p.lease_seconds / 3
    plan.ledger_per_s = {
        "done?": rate,
        "get": rate,
        "claim": rate,
        "checkpoint": rate * plan.batches_per_object,
        "complete": rate,
        "lookup": rate,  # one ship_work_items call per message (one object each)
        "renew": plan.processes / renew_round,  # one transaction per busy process per round
        "renew_rows": plan.in_flight / renew_round,
    }
    plan.ledger_tx_per_s = sum(v for k, v in plan.ledger_per_s.items() if k != "renew_rows")
    plan.ledger_load = plan.ledger_tx_per_s / m.ledger_tx_per_s
    # psycopg_pool: at most 8 per process (PostgresLedger's max_connections), one per thread
    # that talks to the ledger at once: the object threads, the lease keeper, /readyz.
    plan.ledger_connections = plan.processes * min(8, p.concurrency + 2)
    if plan.ledger_load > 0.5:
        plan.warnings.append(
            f"ledger: {plan.ledger_tx_per_s:,.0f} tx/s is {plan.ledger_load:.0%} of what the "
            f"measured PostgreSQL did ({m.ledger_tx_per_s:,.0f} tx/s): give it more cores, or "
            "raise --batch-bytes/--batch-lines to checkpoint less often"
        )
    if plan.ledger_connections > 100:
        plan.warnings.append(
            f"ledger: up to {plan.ledger_connections} connections, above PostgreSQL's default "
            "max_connections (100): put pgbouncer in front (see docs/scaling.md)"
        )


def _queues(plan: Plan, p: Params) -> None:
    """API calls per object on SQS and JetStream, and their limits."""
    # The worker extends a message every third of the visibility timeout while it works on
    # it (the lease keeper's rhythm); an object done sooner is never extended.
    extends = math.floor(plan.object_wall_seconds / (p.visibility_timeout / 3))
    plan.sqs_per_object = {
        "SendMessage (bucket notification)": 1.0,
        "SendMessageBatch (logferry enqueue, backfills)": 1 / LIMITS["sqs_batch_entries"]["value"],
        "ReceiveMessage": 1 / p.messages_per_receive,
        "ChangeMessageVisibility": float(extends),
        "DeleteMessage": 1.0,
    }
    live = sum(
        v for k, v in plan.sqs_per_object.items() if not k.startswith("SendMessageBatch")
    )  # a live notification; a backfill replaces the SendMessage with a tenth of a batch
    plan.sqs_requests_per_day = live * plan.objects_per_s * DAY
    plan.jetstream_per_object = {
        "publish": 1.0,
        "fetch": 1 / p.messages_per_receive,
        "in-progress ack": float(extends),
        "ack": 1.0,
    }
    plan.s3_requests_per_day = 2 * plan.objects_per_s * DAY  # HEAD + GET per object
    limit = LIMITS["sqs_standard_in_flight"]["value"]
    if plan.in_flight > 0.5 * limit:
        plan.warnings.append(
            f"SQS: {plan.in_flight:,.0f} messages in flight is near the {limit:,} quota"
        )
    if plan.in_flight > LIMITS["jetstream_max_ack_pending"]["value"]:
        plan.warnings.append(
            f"JetStream: {plan.in_flight:,.0f} messages in flight exceeds the consumer's "
            "default max_ack_pending (1,000): raise it on the durable consumer"
        )
    if plan.object_wall_seconds > p.visibility_timeout:
        plan.warnings.append(
            f"an object takes ~{plan.object_wall_seconds:,.0f} s: each is extended "
            f"{extends} times; a longer visibility timeout saves the calls"
        )


def _cost(plan: Plan) -> None:
    """List-price cost per day (USD) of the requests the workload makes."""
    sqs = LIST_PRICES["sqs_standard_per_million_requests"]["usd"]
    s3 = LIST_PRICES["s3_standard_get_per_million_requests"]["usd"]
    plan.cost_per_day = {
        "sqs": plan.sqs_requests_per_day / 1e6 * sqs,
        "s3_get_head": plan.s3_requests_per_day / 1e6 * s3,
    }


# -- output --------------------------------------------------------------------------------


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:,.2f}"


def render(p: Params, m: Measured, plan: Plan) -> str:
    """The plan as a readable table."""
    out = [
        f"workload: {_n(plan.objects_per_s)} objects/s ({_n(plan.objects_per_s * DAY)}/day), "
        f"{_n(plan.lines_per_s)} lines/s, {plan.bytes_per_s / 1e6:,.1f} MB/s uncompressed; "
        f"{_n(plan.lines_per_object)} lines ({plan.lines_per_object * m.mean_line_bytes / 1e3:,.0f}"
        f" kB) and {plan.batches_per_object} batch(es) per object",
        f"measured ({m.date}, {m.nproc} cores, load {m.load_average:g}): "
        f"{_n(m.lines_per_s)} lines/s per process, "
        f"{m.object_overhead_s * 1e3:.1f} ms overhead per object, "
        f"CPU {m.cpu_per_line_s * 1e6:.1f} µs per line + {m.cpu_per_object_s * 1e3:.1f} ms per "
        f"object; ledger {_n(m.ledger_tx_per_s)} tx/s "
        f"at {m.ledger_threads} runners",
        "",
        "workers",
        f"  process time per object        {plan.process_seconds_per_object * 1e3:,.1f} ms "
        f"(+ {plan.round_trips} round trips of {p.rtt_ms:g} ms)",
        f"  objects/s per process          {_n(plan.objects_per_s_per_process)}",
        f"  processes                      {plan.processes:,} "
        f"({plan.utilisation:.0%} busy; target {p.target_utilisation:.0%})",
        f"  CPU cores (at the target)      {plan.cores:,.1f}",
        f"  {p.cores_per_host}-core hosts                   {plan.hosts:,}",
        f"  processes per host             {plan.processes_per_host}",
        f"  objects in flight              {_n(plan.in_flight)} "
        f"(--concurrency {p.concurrency}, ~{plan.object_wall_seconds:,.1f} s each)",
        "",
        "ledger (PostgreSQL), transactions/s",
    ]
    for call, rate in plan.ledger_per_s.items():
        label = "renew (rows updated)" if call == "renew_rows" else call
        out.append(f"  {label:<30} {_n(rate)}")
    out += [
        f"  {'total':<30} {_n(plan.ledger_tx_per_s)} "
        f"({plan.ledger_load:.0%} of the measured {_n(m.ledger_tx_per_s)})",
        f"  {'connections (at most)':<30} {plan.ledger_connections:,}",
        "",
        "SQS calls per object",
    ]
    for call, n in plan.sqs_per_object.items():
        out.append(f"  {call:<48} {n:g}")
    out += [
        f"  requests/day (live notifications)              {_n(plan.sqs_requests_per_day)}",
        "JetStream calls per object: "
        + ", ".join(f"{k} {v:g}" for k, v in plan.jetstream_per_object.items()),
        "",
        "cost per day at list prices (USD; see LIST_PRICES for sources and dates)",
        f"  SQS requests        {plan.cost_per_day['sqs']:,.2f}",
        f"  S3 GET + HEAD       {plan.cost_per_day['s3_get_head']:,.2f}",
    ]
    if plan.processes_per_host > p.cores_per_host:
        out.append(
            "note: more processes than cores per host: one process's rate was measured on a "
            f"shared machine (load {m.load_average:g} on {m.nproc} cores); with a core each, "
            "fewer processes do"
        )
    out += [f"warning: {w}" for w in plan.warnings]
    return "\n".join(out)


# -- measuring -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What a figure was measured on (the machine is shared: the load average says how)."""
    try:
        model_name = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model_name = platform.processor()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model_name,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def measure_ship(mb: float) -> dict[str, Any]:
    """One process on one large object: ``bench/ship_throughput.py --json``, both tools."""
    cmd = [sys.executable, str(HERE / "ship_throughput.py"), "--mb", f"{mb:g}", "--repeat", "1"]
    cmd.append("--json")
    began = _now()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    doc = json.loads(out)
    lf, mn = doc["tools"]["logferry"], doc["tools"]["minimal"]
    return {
        "command": f"PYTHONPATH=src python bench/ship_throughput.py --mb {mb:g} --repeat 1 --json",
        "date": began,
        "machine": machine() | {"nproc": doc["machine"]["nproc"]},
        "lines": doc["object"]["lines"],
        "raw_bytes": doc["object"]["raw_bytes"],
        "mean_line_bytes": doc["object"]["raw_bytes"] / doc["object"]["lines"],
        "seconds": lf["best_seconds"],
        "lines_per_s": lf["lines_per_s"],
        "mb_per_s": lf["mb_per_s"],
        "cpu_seconds": lf["cpu_seconds"],
        "cores_per_process": lf["cpu_seconds"] / lf["best_seconds"],
        "cpu_per_line_s": lf["cpu_seconds"] / doc["object"]["lines"],
        "peak_rss_mb": lf["peak_rss_mb"],
        "minimal_loop_lines_per_s": mn["lines_per_s"],
        "ratio_to_minimal_loop": lf["lines_per_s"] / mn["lines_per_s"],
    }


@contextlib.contextmanager
def scratch_schema(base_url: str) -> Iterator[str]:
    """A ledger URL whose tables live in a new schema of ``base_url``'s database, dropped after."""
    import psycopg

    schema = f"lf_scale_{secrets.token_hex(4)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _ledger_run(url: str, threads: int, objects: int, checkpoints: int) -> dict[str, Any]:
    """``threads`` runners each claim, checkpoint and complete their share of ``objects``."""
    from logferry.ledger import open_ledger
    from logferry.records import ObjectInfo

    ledger = open_ledger(url)
    source = f"bench-{threads}-{secrets.token_hex(3)}"
    spent: dict[str, float] = dict.fromkeys(("get", "claim", "checkpoint", "complete"), 0.0)
    lock = threading.Lock()

    def runner(index: int) -> None:
        mine = dict.fromkeys(spent, 0.0)
        owner = f"bench-{index}-{os.getpid()}"
        for i in range(index, objects, threads):
            obj = ObjectInfo(f"logs/{i:07d}.gz", 100_000, f"etag{i}", 0)
            t0 = time.perf_counter()
            ledger.get(source, obj.key, obj.etag)
            t1 = time.perf_counter()
            claim = ledger.claim(source, obj, owner, 120.0)
            t2 = time.perf_counter()
            assert claim is not None
            for n in range(checkpoints):
                ledger.checkpoint(claim, (n + 1) * 1000, 200_000, 120.0)
            t3 = time.perf_counter()
            ledger.complete(claim)
            t4 = time.perf_counter()
            for name, d in zip(mine, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                mine[name] += d
        with lock:
            for name, d in mine.items():
                spent[name] += d

    began = time.perf_counter()
    pool = [threading.Thread(target=runner, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    seconds = time.perf_counter() - began
    done = sum(1 for e in ledger.entries(source=source) if e.status == "done")
    ledger.close()
    tx = objects * (3 + checkpoints)
    return {
        "threads": threads,
        "objects": objects,
        "done": done,
        "seconds": seconds,
        "objects_per_s": objects / seconds,
        "tx_per_s": tx / seconds,
        "checkpoints_per_s": objects * checkpoints / seconds,
        "mean_ms": {
            "get": spent["get"] / objects * 1e3,
            "claim": spent["claim"] / objects * 1e3,
            "checkpoint": spent["checkpoint"] / max(1, objects * checkpoints) * 1e3,
            "complete": spent["complete"] / objects * 1e3,
        },
    }


def measure_ledger(base_url: str, objects: int, checkpoints: int) -> dict[str, Any]:
    """Per-object ledger cost on PostgreSQL at 1, 2, 4 and 8 concurrent runners."""
    import psycopg

    began = _now()
    with psycopg.connect(base_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    with scratch_schema(base_url) as url:
        runs = [_ledger_run(url, n, objects, checkpoints) for n in (1, 2, 4, 8)]
    return {
        "command": "PYTHONPATH=src python bench/scale_model.py --measure "
        f"--postgres {base_url} --ledger-objects {objects} --checkpoints {checkpoints}",
        "date": began,
        "machine": machine(),
        "server": f"PostgreSQL {row[0] if row else '?'} on the same machine",
        "checkpoints_per_object": checkpoints,
        "transactions_per_object": 3 + checkpoints,
        "runs": runs,
    }


def _small_objects(s3: Any, bucket: str, count: int, kb: float) -> tuple[int, int]:
    """Upload ``count`` gzip NDJSON objects of about ``kb`` kB; return lines and raw bytes."""
    sys.path.insert(0, str(HERE))
    from ship_throughput import iter_lines

    lines = raw = 0
    for i in range(count):
        body = list(iter_lines(1000 + i, int(kb * 1000)))
        lines += len(body)
        raw += sum(map(len, body))
        key = f"app/2024/05/01/small-{i:05d}.ndjson.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"".join(body), 6))
    return lines, raw


def measure_small_objects(base_url: str, count: int, kb: float, ship: dict[str, Any]
                          ) -> dict[str, Any]:  # fmt: skip
    """One process shipping ``count`` small objects from S3 (moto) to Mezmo, PostgreSQL ledger.

    The per-object overhead is the process's own shipping time per object less what its
    lines cost at the large-object rate ``ship`` measured.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    from logferry.testing.mezmo_server import MezmoServer

    began = _now()
    fake = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    fake |= {"AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=fake["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=fake["AWS_SECRET_ACCESS_KEY"],
            region_name=fake["AWS_DEFAULT_REGION"],
        )
        s3.create_bucket(Bucket="lf-scale")
        lines, raw = _small_objects(s3, "lf-scale", count, kb)
        with (
            MezmoServer("bench-key", store=False, validate=False) as server,
            scratch_schema(base_url) as ledger,
        ):
            env = {**os.environ, **fake, "AWS_ENDPOINT_URL": endpoint}
            env["LOGDNA_INGESTION_KEY"] = "bench-key"
            cmd = [sys.executable, "-m", "logferry", "ship", "s3://lf-scale/", "--to"]
            cmd += [f"{server.url}?hostname=bench", "--ledger", ledger, "--quiet", "--json"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            delivered = server.counters()["lines"]
    finally:
        moto.stop()
    if proc.returncode != 0 or delivered != lines:
        raise RuntimeError(f"small-object run failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    own = float(summary["seconds"])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    overhead = max(0.0, own / count - (lines / count) / ship["lines_per_s"])
    return {
        "command": "PYTHONPATH=src python bench/scale_model.py --measure "
        f"--small-objects {count} --small-kb {kb:g} (logferry ship s3://… --to mezmo "
        "--ledger postgresql://…, moto S3 and the Mezmo test server on loopback)",
        "date": began,
        "machine": machine(),
        "objects": count,
        "lines": lines,
        "raw_bytes": raw,
        "wall_seconds": wall,
        "own_seconds": own,
        "cpu_seconds": cpu,
        "objects_per_s": count / own,
        "object_overhead_s": overhead,
        "cpu_per_object_s": max(0.0, (cpu - lines * ship["cpu_per_line_s"]) / count),
    }


def measure(args: argparse.Namespace) -> int:
    """Run every measurement ``--repeat`` times; write the best of each to ``--measured``.

    The best, not the mean: on a shared machine the other loads only ever slow a run down.
    Every run's figure and the load average are kept beside it.
    """
    log = lambda text: print(text, file=sys.stderr)  # noqa: E731
    ships, smalls, ledgers = [], [], []
    for i in range(args.repeat):
        log(f"round {i + 1}/{args.repeat}: ship_throughput.py --mb {args.mb:g} …")
        ships.append(measure_ship(args.mb))
        log(f"  {ships[-1]['lines_per_s']:,.0f} lines/s "
            f"({ships[-1]['ratio_to_minimal_loop']:.2f}x the loop)")  # fmt: skip
        log(f"  {args.small_objects} small objects of ~{args.small_kb:g} kB …")
        smalls.append(measure_small_objects(args.postgres, args.small_objects, args.small_kb,
                                            ships[-1]))  # fmt: skip
        log(f"  {smalls[-1]['objects_per_s']:,.1f} objects/s, "
            f"{smalls[-1]['object_overhead_s'] * 1e3:.1f} ms each")  # fmt: skip
        log("  PostgreSQL ledger at 1, 2, 4, 8 runners …")
        ledgers.append(measure_ledger(args.postgres, args.ledger_objects, args.checkpoints))
        log("  " + ", ".join(f"{r['threads']}: {r['tx_per_s']:,.0f} tx/s"
                             for r in ledgers[-1]["runs"]))  # fmt: skip
    ship = max(ships, key=lambda r: r["lines_per_s"])
    ship["all_lines_per_s"] = [round(r["lines_per_s"]) for r in ships]
    small = max(smalls, key=lambda r: r["objects_per_s"])
    small["all_objects_per_s"] = [round(r["objects_per_s"], 1) for r in smalls]
    ledger = dict(ledgers[0])
    ledger["runs"] = [
        max((run["runs"][i] for run in ledgers), key=lambda r: r["tx_per_s"])
        for i in range(len(ledger["runs"]))
    ]
    ledger["all_tx_per_s"] = [[round(r["tx_per_s"]) for r in run["runs"]] for run in ledgers]
    for figure in (ship, small, ledger):
        figure["rounds"] = args.repeat  # the best of this many, every round's figure beside it
    doc = {
        "measured_with": f"PYTHONPATH=src python bench/scale_model.py --measure --repeat "
        f"{args.repeat}",
        "ship_throughput": ship,
        "small_objects": small,
        "ledger_postgres": ledger,
    }
    Path(args.measured).write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {args.measured}")
    return 0


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects-per-day", type=float, help="objects arriving per day")
    p.add_argument("--lines-per-second", type=float, help="log lines arriving per second")
    p.add_argument("--mean-object-bytes", type=float, default=100_000,
                   help="mean uncompressed object size (default 100000)")  # fmt: skip
    p.add_argument("--lines-per-object", type=float,
                   help="lines per object (default: mean object bytes / measured line size)")  # fmt: skip
    p.add_argument("--concurrency", type=int, help="objects in flight per process")
    p.add_argument("--rtt-ms", type=float, default=0.0,
                   help="network round trip to S3, sink and ledger, ms (default 0: loopback)")  # fmt: skip
    p.add_argument("--cores-per-host", type=int, default=2, help="cores per host (default 2)")
    p.add_argument("--target-utilisation", type=float, default=0.7,
                   help="how busy processes may run at the mean rate (default 0.7)")  # fmt: skip
    p.add_argument("--measured", default=str(DEFAULT_MEASURED), help="measurements (JSON)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--measure", action="store_true", help="measure again and write --measured")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--repeat", type=int, default=3, help="--measure: rounds, best kept")
    p.add_argument("--mb", type=float, default=50.0, help="--measure: ship_throughput's --mb")
    p.add_argument("--small-objects", type=int, default=300, help="--measure: small objects")
    p.add_argument("--small-kb", type=float, default=20.0, help="--measure: their size, kB")
    p.add_argument("--ledger-objects", type=int, default=400, help="--measure: per run")
    p.add_argument("--checkpoints", type=int, default=2, help="--measure: per object")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the sizing of the workload the options describe."""
    args = parse_args(argv)
    if args.measure:
        return measure(args)
    if args.objects_per_day is None and args.lines_per_second is None:
        print("give --objects-per-day or --lines-per-second (or --measure)", file=sys.stderr)
        return 2
    overrides: dict[str, Any] = {
        "objects_per_day": args.objects_per_day,
        "lines_per_second": args.lines_per_second,
        "mean_object_bytes": args.mean_object_bytes,
        "lines_per_object": args.lines_per_object,
        "cores_per_host": args.cores_per_host,
        "rtt_ms": args.rtt_ms,
        "target_utilisation": args.target_utilisation,
    }
    if args.concurrency:
        overrides["concurrency"] = args.concurrency
    params = params_with_engine_defaults(**overrides)
    measured = load_measured(Path(args.measured))
    plan = model(params, measured)
    if args.json:
        doc = {"params": asdict(params), "measured": asdict(measured), "plan": asdict(plan)}
        doc["list_prices"] = LIST_PRICES
        print(json.dumps(doc, indent=2))
    else:
        print(render(params, measured, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
