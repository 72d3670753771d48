"""Benchmark: ship one gzip NDJSON object from S3 to Mezmo, logferry against a minimal loop.

What it does, in one run:

1. Generates ``--mb`` MB (10^6 bytes, uncompressed; default 100) of realistic app NDJSON
   lines (150-250 bytes, ISO ``timestamp``), deterministically from ``--seed``, streaming
   straight into a gzip temp file (never all lines in memory).
2. Starts moto in server mode and a loopback Mezmo-compatible ingest server
   (``logferry.testing.mezmo_server``, ``store=False, validate=False``), both in this process,
   and uploads the object. The receiver keeps each request's body and inflates and counts
   them after the run (``count_later``): a real ingest service runs on other machines, and
   on 2 cores its work would slow whichever tool uses more than one core. ``--count-inline``
   counts as requests come, as before 2026-11-29.
3. Runs, each in its own subprocess so wall time and peak RSS are measured the same way
   (``os.wait4``) and neither pollutes the other:

   * ``logferry``: ``python -m logferry ship s3://BUCKET/ --to mezmo+http://… --ledger
     sqlite:///…/l.db --quiet --json`` (a fresh ledger per run);
   * ``minimal``: this script with ``--minimal-loop``: boto3 streaming GET → zlib → split
     lines → ``orjson.loads`` each line and parse its ``timestamp`` → build
     ``{"timestamp", "line", "app"[, "level"]}`` dicts → ``orjson.dumps({"lines": …})`` →
     gzip level 1 (logferry's sink default, for fairness) → httpx POST in 2 MiB requests.
     One process, one thread. (It gzips with zlib; logferry with ISA-L when its ``fast``
     extra is installed: see bench/README.md to measure it with zlib.)

4. Checks both delivered every line (the server's counter) and prints a table, the
   logferry/minimal ratio and whether the issue's targets are met (≥ 1.1× the loop's
   throughput, aim 2×; peak RSS ≤ 150 MB). The table names the logferry the tools imported
   (set PYTHONPATH=CHECKOUT/src to compare checkouts; the tools inherit it).

Usage::

    python bench/ship_throughput.py                 # 100 MB, one run each
    python bench/ship_throughput.py --mb 20 --repeat 3
    python bench/ship_throughput.py --json          # figures as JSON on stdout

Both servers share this (parent) process; the table's "server CPU" column says how busy it
was, so a server-bound run is visible rather than silently misread as a client figure.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import logging
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

INGESTION_KEY = "bench-ingestion-key"
BUCKET = "logferry-bench"
KEY = "app/2024/05/01/app-0001.ndjson.gz"
APP = "logferry"
HOSTNAME = "bench-host"
#: Same request size and gzip level as logferry's Mezmo sink defaults.
MAX_REQUEST_BYTES = 2 * 1024 * 1024
GZIP_LEVEL = 1
TARGET_RATIO = 1.1  # the engine issue's bar (was 0.8 before it)
AIM_RATIO = 2.0
TARGET_RSS_MB = 150.0
MB = 1_000_000

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# -- data ----------------------------------------------------------------------------------

_SERVICES = ("checkout", "cart", "payments", "search", "auth", "inventory", "shipping")
_LEVELS = ("info",) * 14 + ("debug",) * 3 + ("warn",) * 2 + ("error",)
_METHODS = ("GET",) * 6 + ("POST",) * 3 + ("PUT", "DELETE")
_PATHS = (
    "/api/v1/orders/{id}",
    "/api/v1/cart/{id}/items",
    "/api/v2/search?q=shoes&page={n}",
    "/api/v1/users/{id}/profile",
    "/healthz",
    "/api/v1/payments/{id}/capture",
    "/api/v1/inventory/sku-{id}",
)
_MESSAGES = (
    "request completed",
    "cache miss, loaded from database",
    "upstream responded slowly",
    "retrying after transient error",
    "user session refreshed",
    "payment authorised by provider",
    "item reserved in warehouse",
    "validation failed: missing field 'zip'",
    "rate limit close to threshold",
    "Zahlung bestätigt für Bestellung",  # some non-ASCII, as real logs have
)


def iter_lines(seed: int, target_bytes: int) -> Iterator[bytes]:
    """Yield NDJSON lines (with ``\\n``) of 150-250 bytes until ``target_bytes`` are out."""
    rng = random.Random(seed)
    t_ms = 1_714_521_600_000  # 2024-05-01T00:00:00Z
    out = 0
    while out < target_bytes:
        t_ms += rng.randint(0, 4)
        iso = dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")
        rec: dict[str, Any] = {
            "timestamp": iso.replace("+00:00", "Z"),
            "level": rng.choice(_LEVELS),
            "service": rng.choice(_SERVICES),
            "host": f"ip-10-0-{rng.randint(0, 15)}-{rng.randint(1, 254)}",
            "msg": rng.choice(_MESSAGES),
        }
        if rng.random() < 0.6:  # access-log style lines
            rec["method"] = rng.choice(_METHODS)
            rec["path"] = rng.choice(_PATHS).format(
                id=rng.randint(1, 999_999), n=rng.randint(1, 40)
            )
            rec["status"] = rng.choice((200, 200, 200, 201, 204, 304, 400, 404, 500))
            rec["duration_ms"] = round(rng.expovariate(1 / 40), 2)
        if rng.random() < 0.5:
            rec["trace_id"] = f"{rng.getrandbits(64):016x}"
        line = orjson.dumps(rec)
        # Pad with a user agent so lengths spread over ~150-250 bytes.
        want = rng.randint(150, 250) - len(line) - len(',"ua":""')
        if want > 0:
            ua = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 " * 3)[:want]
            line = line[:-1] + b',"ua":"' + ua.encode() + b'"}'
        line += b"\n"
        out += len(line)
        yield line


@dataclass(slots=True)
class Dataset:
    """The generated object: where it is and what it holds."""

    path: str
    lines: int
    raw_bytes: int
    gz_bytes: int
    seconds: float


def generate(path: Path, mb: float, seed: int) -> Dataset:
    """Write about ``mb`` MB of NDJSON to ``path`` as gzip, streaming in blocks."""
    t0 = time.perf_counter()
    lines = raw = 0
    block: list[bytes] = []
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", compresslevel=6) as gz:
        for line in iter_lines(seed, int(mb * MB)):
            block.append(line)
            lines += 1
            raw += len(line)
            if len(block) >= 10_000:
                gz.write(b"".join(block))
                block.clear()
        gz.write(b"".join(block))
    return Dataset(str(path), lines, raw, path.stat().st_size, time.perf_counter() - t0)


# -- the minimal loop (runs in a subprocess) ------------------------------------------------


def minimal_loop(bucket: str, key: str, endpoint: str) -> dict[str, int]:
    """Ship ``s3://bucket/key`` to ``endpoint`` the plainest way; return what was sent."""
    import zlib

    import boto3
    import httpx

    s3 = boto3.client("s3")  # endpoint from AWS_ENDPOINT_URL
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    inflater = zlib.decompressobj(31)
    ingestion_key = os.environ["LOGDNA_INGESTION_KEY"]
    client = httpx.Client(timeout=60)
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    loads, dumps, fromiso = orjson.loads, orjson.dumps, dt.datetime.fromisoformat
    # {"timestamp":1714521600000,"line":"","app":"logferry","level":"debug"}, + escapes slack
    overhead = len('{"timestamp":1714521600000,"line":"","app":"","level":"debug"},') + len(APP)
    empty = len('{"lines":[]}')
    sent = {"lines": 0, "requests": 0, "body_bytes": 0}
    entries: list[dict[str, Any]] = []
    size = empty

    def flush() -> None:
        nonlocal entries, size
        gz = zlib.compress(dumps({"lines": entries}), GZIP_LEVEL, wbits=31)
        params = {"hostname": HOSTNAME, "now": str(time.time_ns() // 1_000_000)}
        r = client.post(
            endpoint, content=gz, headers=headers, params=params, auth=(ingestion_key, "")
        )
        r.raise_for_status()
        sent["lines"] += len(entries)
        sent["requests"] += 1
        sent["body_bytes"] += len(gz)
        entries, size = [], empty

    pending = b""
    for chunk in body.iter_chunks(1 << 20):
        data = pending + inflater.decompress(chunk)
        parts = data.split(b"\n")
        pending = parts.pop()
        for raw in parts:
            if not raw:
                continue
            obj = loads(raw)
            ts = int(fromiso(obj["timestamp"]).timestamp() * 1000)
            line = raw.decode()
            entry: dict[str, Any] = {"timestamp": ts, "line": line, "app": APP}
            level = obj.get("level")
            if type(level) is str and level:
                entry["level"] = level  # logferry sends it too: same payload
            cost = len(raw) + overhead
            if size + cost > MAX_REQUEST_BYTES and entries:
                flush()
            entries.append(entry)
            size += cost
    pending += inflater.flush()
    if pending.strip():
        raise RuntimeError("object does not end with a newline; the loop does not handle it")
    if entries:
        flush()
    client.close()
    return sent


# -- running and measuring -----------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """One measured subprocess run."""

    tool: str
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_mb: float
    lines_delivered: int
    requests: int
    exit_code: int


class Spawner:
    """A small process, started before the benchmark grows, that runs and reaps the tools.

    Linux seeds a child's ``ru_maxrss`` with the high-water RSS of the process it was
    forked from (exec records the old, copied address space's peak), so tools forked
    from this parent (moto, both servers, boto3, the object's bookkeeping) would all report
    at least the parent's peak. Forked from a ~15 MB spawner, each tool's peak is its own.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--spawner"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def run(self, cmd: list[str], env: dict[str, str], out: str, err: str) -> dict[str, Any]:
        """Run ``cmd`` to completion; return its exit code, wall time and ``wait4`` usage."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"cmd": cmd, "env": env, "out": out, "err": err}
        self.proc.stdin.write(orjson.dumps(request) + b"\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError("the spawner died")
        return dict(orjson.loads(reply))

    def close(self) -> None:
        """Let the spawner exit."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def spawner_main() -> int:
    """The spawner's loop: one JSON request per stdin line, one JSON reply per stdout line."""
    for raw in sys.stdin.buffer:
        req = orjson.loads(raw)
        with open(req["out"], "wb") as out, open(req["err"], "wb") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(req["cmd"], env=req["env"], stdout=out, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - t0
        reply = {
            "exit_code": os.waitstatus_to_exitcode(status),
            "seconds": seconds,
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "maxrss_kib": usage.ru_maxrss,  # Linux reports KiB
        }
        sys.stdout.buffer.write(orjson.dumps(reply) + b"\n")
        sys.stdout.buffer.flush()
    return 0


def run_measured(
    spawner: Spawner,
    tool: str,
    cmd: list[str],
    env: dict[str, str],
    server: Any,
    work: Path,
    quiet: bool,
) -> tuple[Run, str]:
    """Run ``cmd`` through ``spawner``; return its timings, peak RSS and stdout."""
    server.clear()
    out, err = work / f"{tool}.stdout", work / f"{tool}.stderr"
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    res = spawner.run(cmd, env, str(out), str(err))
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    if res["exit_code"] != 0 and not quiet:
        print(f"{tool} exited {res['exit_code']}:\n{err.read_text()[-4000:]}", file=sys.stderr)
    counters = server.counters()
    run = Run(
        tool=tool,
        seconds=res["seconds"],
        cpu_seconds=res["cpu_seconds"],
        server_cpu_seconds=(self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
        peak_rss_mb=res["maxrss_kib"] * 1024 / MB,
        lines_delivered=counters["lines"],
        requests=counters["accepted"],
        exit_code=res["exit_code"],
    )
    return run, out.read_text()


def own_seconds(stdout: str) -> float | None:
    """The ``seconds`` of ``logferry ship --json``'s summary: the wall time less start and exit."""
    try:
        return float(orjson.loads(stdout.strip().splitlines()[-1])["seconds"])
    except (IndexError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return None


@dataclass(slots=True)
class Summary:
    """Best and median of one tool's runs."""

    tool: str
    runs: int
    best_seconds: float
    median_seconds: float
    lines_per_s: float
    mb_per_s: float
    median_lines_per_s: float
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_mb: float
    lines_delivered: int
    requests: int
    all_delivered: bool


def summarize(tool: str, runs: list[Run], data: Dataset) -> Summary:
    """Fold repeated runs: best and median time, the highest peak RSS."""
    best = min(runs, key=lambda r: r.seconds)
    median = statistics.median(r.seconds for r in runs)
    return Summary(
        tool=tool,
        runs=len(runs),
        best_seconds=best.seconds,
        median_seconds=median,
        lines_per_s=data.lines / best.seconds,
        mb_per_s=data.raw_bytes / MB / best.seconds,
        median_lines_per_s=data.lines / median,
        cpu_seconds=best.cpu_seconds,
        server_cpu_seconds=best.server_cpu_seconds,
        peak_rss_mb=max(r.peak_rss_mb for r in runs),
        lines_delivered=best.lines_delivered,
        requests=best.requests,
        all_delivered=all(r.lines_delivered == data.lines and r.exit_code == 0 for r in runs),
    )


#: Run in a child with the tools' environment: which logferry ``python -m logferry`` imports.
_WHICH_LOGFERRY = (
    "import importlib.util, os, logferry; "
    "print(os.path.dirname(logferry.__file__), importlib.util.find_spec('logferry.engine') is not None)"
)


def which_logferry(env: dict[str, str]) -> str:
    """Where the tools' ``logferry`` comes from (PYTHONPATH wins over the installed one)."""
    out = subprocess.run(
        [sys.executable, "-c", _WHICH_LOGFERRY], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        return "? (import failed)"
    path, engine = out.stdout.split()
    return f"{path} ({'engine/ package' if engine == 'True' else 'no engine/ package'})"


def start_servers(
    stack: contextlib.ExitStack, bucket: str, objects: dict[str, str], *, count_later: bool
) -> tuple[str, Any]:
    """Start moto (server mode) with ``bucket`` holding ``objects`` (key: local file) and the
    Mezmo test server in counting mode, both stopped by ``stack``; return moto's endpoint
    and the Mezmo server."""
    import boto3
    from moto.server import ThreadedMotoServer

    from logferry.testing.mezmo_server import MezmoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    stack.callback(moto.stop)
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for key, path in objects.items():
        s3.upload_file(path, bucket, key)
    server = MezmoServer(INGESTION_KEY, store=False, validate=False, count_later=count_later)
    return endpoint, stack.enter_context(server)


def compile_logferry(lf_source: str) -> None:
    """Write the ``.pyc`` files of the logferry the tools import, as ``pip install`` does.

    Under ``PYTHONDONTWRITEBYTECODE`` (set on some CI machines) a checkout's modules are
    compiled again by every run, about 0.1 s that an installed logferry never pays; the
    minimal loop's libraries are installed, so this keeps the comparison fair.
    """
    import compileall

    path = lf_source.split(" (")[0]
    if os.path.isdir(path):
        compileall.compile_dir(path, quiet=1)


def machine(lf_source: str = "?") -> dict[str, Any]:
    """What the figures were measured on, and which logferry ran."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "logferry": lf_source,
    }


def print_table(
    data: Dataset, summaries: list[Summary], verdict: dict[str, Any], lf_source: str
) -> None:
    """Print the human report."""
    m = machine(lf_source)
    print(
        f"machine: nproc={m['nproc']} (cpu_count={m['cpu_count']}), "
        f"{m['implementation']} {m['python']}, {m['platform']}\nlogferry: {m['logferry']}"
    )
    print(
        f"object: {data.raw_bytes / MB:.1f} MB uncompressed, {data.gz_bytes / MB:.1f} MB gzip, "
        f"{data.lines:,} lines (avg {data.raw_bytes / data.lines:.0f} B); "
        f"requests of 2 MiB, gzip level {GZIP_LEVEL} on both sides"
    )
    runs = summaries[0].runs
    print(f"runs per tool: {runs} (best shown; median lines/s beside it)\n")
    head = (
        f"{'tool':<9} {'seconds':>8} {'lines/s':>11} {'MB/s':>7} {'median l/s':>11} "
        f"{'CPU s':>6} {'srv CPU s':>9} {'peak RSS MB':>11} {'requests':>8} {'lines delivered':>16}"
    )
    print(head)
    print("-" * len(head))
    for s in summaries:
        ok = "" if s.all_delivered else "  MISSING"
        print(
            f"{s.tool:<9} {s.best_seconds:>8.2f} {s.lines_per_s:>11,.0f} {s.mb_per_s:>7.1f} "
            f"{s.median_lines_per_s:>11,.0f} {s.cpu_seconds:>6.1f} {s.server_cpu_seconds:>9.1f} "
            f"{s.peak_rss_mb:>11.1f} {s.requests:>8} {s.lines_delivered:>16,}{ok}"
        )
    print()
    if verdict["ratio"] == verdict["ratio"]:  # not NaN: both tools ran
        print(
            f"throughput logferry/minimal: {verdict['ratio']:.2f}x best, "
            f"{verdict['median_ratio']:.2f}x median "
            f"(target >= {TARGET_RATIO:.2f}x: {'MET' if verdict['ratio_met'] else 'NOT MET'}; "
            f"aim {AIM_RATIO:.0f}x: {'MET' if verdict['aim_met'] else 'not yet'})"
        )
    print(
        f"logferry peak RSS: {verdict['logferry_rss_mb']:.1f} MB "
        f"(target <= {TARGET_RSS_MB:.0f} MB: {'MET' if verdict['rss_met'] else 'NOT MET'})"
    )
    both = "same lines delivered by both" if len(summaries) > 1 else "all lines delivered"
    print(f"{both}: {'yes' if verdict['same_lines'] else 'NO'}")
    print(
        f"(peak RSS is each tool's own, via wait4 from a small spawner; "
        f"`python -c pass` measures {verdict['rss_floor_mb']:.1f} MB)"
    )


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=100.0, help="uncompressed MB (10^6 B) to ship")
    p.add_argument("--repeat", type=int, default=1, help="runs per tool (best and median shown)")
    p.add_argument("--seed", type=int, default=42, help="seed of the generated data")
    p.add_argument(
        "--count-inline",
        action="store_true",
        help="the receiver inflates and counts each request as it comes, on the cores the "
        "tools run on (default: it keeps the bodies and counts them after each run)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--only", choices=("logferry", "minimal"), help="run one tool only (no ratio)")
    p.add_argument(
        "--profile",
        metavar="OUT",
        help="after measuring, run logferry once more under py-spy (all threads) into OUT "
        "(raw collapsed stacks; needs `pip install py-spy`)",
    )
    p.add_argument(
        "--logferry-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `logferry ship` (repeatable), e.g. --logferry-arg=--workers=1",
    )
    p.add_argument("--workdir", help="keep the object, ledgers and logs here (default: temp)")
    # Internal: the minimal loop's subprocess entry point.
    p.add_argument("--minimal-loop", nargs=3, metavar=("BUCKET", "KEY", "ENDPOINT"),
                   help=argparse.SUPPRESS)  # fmt: skip
    p.add_argument("--spawner", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--minimal-loop``, be the minimal loop's subprocess)."""
    args = parse_args(argv)
    if args.minimal_loop:
        sys.stdout.write(orjson.dumps(minimal_loop(*args.minimal_loop)).decode() + "\n")
        return 0
    if args.spawner:
        return spawner_main()
    spawner = Spawner()  # first, while this process is still small: see Spawner

    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    os.environ.update(FAKE_AWS_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's access log
    with contextlib.ExitStack() as stack:
        stack.callback(spawner.close)
        if args.workdir:
            work = Path(args.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lf-bench-")))
        # What an idle interpreter reports: RSS figures far above it are the tool's own.
        floor_res = spawner.run(
            [sys.executable, "-c", "pass"], dict(os.environ), os.devnull, os.devnull
        )
        rss_floor_mb = floor_res["maxrss_kib"] * 1024 / MB
        log(f"generating {args.mb:g} MB of NDJSON (seed {args.seed}) …")
        data = generate(work / "object.ndjson.gz", args.mb, args.seed)
        log(
            f"  {data.lines:,} lines, {data.raw_bytes / MB:.1f} MB → "
            f"{data.gz_bytes / MB:.1f} MB gzip in {data.seconds:.1f} s"
        )

        s3_endpoint, server = start_servers(
            stack, BUCKET, {KEY: data.path}, count_later=not args.count_inline
        )

        env = {
            **os.environ,
            **FAKE_AWS_ENV,
            "AWS_ENDPOINT_URL": s3_endpoint,
            "LOGDNA_INGESTION_KEY": INGESTION_KEY,
        }
        env.pop("MEZMO_INGESTION_KEY", None)
        sink_url = f"{server.url}?hostname={HOSTNAME}"
        lf_source = which_logferry(env)
        compile_logferry(lf_source)
        log(f"logferry: {lf_source}")

        def logferry_cmd(i: int) -> list[str]:
            ledger = work / f"ledger-{i}.db"
            ledger.unlink(missing_ok=True)
            return [
                sys.executable, "-m", "logferry", "ship", f"s3://{BUCKET}/",
                "--to", sink_url, "--ledger", f"sqlite:///{ledger}", "--quiet", "--json",
                *args.logferry_arg,
            ]  # fmt: skip

        minimal_cmd = [
            sys.executable, os.path.abspath(__file__), "--minimal-loop", BUCKET, KEY,
            server.endpoint,
        ]  # fmt: skip
        tools = [t for t in ("logferry", "minimal") if args.only in (None, t)]
        results: dict[str, list[Run]] = {t: [] for t in tools}
        for i in range(args.repeat):
            # Alternate the tools so drift (thermal, page cache) hits both alike.
            for tool in tools:
                cmd = logferry_cmd(i) if tool == "logferry" else minimal_cmd
                run, out = run_measured(spawner, tool, cmd, env, server, work, args.json)
                results[tool].append(run)
                own = own_seconds(out) if tool == "logferry" else None
                log(
                    f"  run {i + 1}/{args.repeat} {tool:<8} {run.seconds:6.2f} s"
                    + ("" if own is None else f" ({own:.2f} s shipping by its own clock)")
                    + f", {data.lines / run.seconds:,.0f} lines/s, CPU {run.cpu_seconds:.1f} s, "
                    f"RSS {run.peak_rss_mb:.0f} MB, {run.lines_delivered:,} lines delivered"
                    + ("" if run.exit_code == 0 else f", exit {run.exit_code}")
                )

        summaries = [summarize(t, results[t], data) for t in tools]
        by = {s.tool: s for s in summaries}
        verdict: dict[str, Any] = {"rss_floor_mb": rss_floor_mb}
        if "logferry" in by and "minimal" in by:
            lf, mn = by["logferry"], by["minimal"]
            ratio = lf.lines_per_s / mn.lines_per_s
            verdict |= {
                "ratio": ratio,
                "median_ratio": lf.median_lines_per_s / mn.median_lines_per_s,
                "ratio_met": ratio >= TARGET_RATIO,
                "aim_met": ratio >= AIM_RATIO,
                "logferry_rss_mb": lf.peak_rss_mb,
                "rss_met": lf.peak_rss_mb <= TARGET_RSS_MB,
                "same_lines": lf.all_delivered
                and mn.all_delivered
                and lf.lines_delivered == mn.lines_delivered,
            }

        if args.profile:
            log(f"profiling one more logferry run with py-spy into {args.profile} …")
            cmd = [
                "py-spy", "record", "--threads", "--rate", "250", "-f", "raw",
                "-o", args.profile, "--", *logferry_cmd(args.repeat),
            ]  # fmt: skip
            run, _ = run_measured(spawner, "logferry-pyspy", cmd, env, server, work, args.json)
            log(f"  {run.seconds:.2f} s under py-spy, {run.lines_delivered:,} lines delivered")

        if args.json:
            doc = {
                "machine": machine(lf_source),
                "object": asdict(data),
                "gzip_level": GZIP_LEVEL,
                "max_request_bytes": MAX_REQUEST_BYTES,
                "tools": {s.tool: asdict(s) for s in summaries},
                "runs": {t: [asdict(r) for r in rs] for t, rs in results.items()},
                "targets": {
                    "ratio": TARGET_RATIO,
                    "aim_ratio": AIM_RATIO,
                    "peak_rss_mb": TARGET_RSS_MB,
                },
                "verdict": verdict,
            }
            print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            if "ratio" in verdict:
                print_table(data, summaries, verdict, lf_source)
            else:
                print_table_one(data, summaries, verdict["rss_floor_mb"], lf_source)
        ok = all(s.all_delivered for s in summaries)
        return 0 if ok else 1


def print_table_one(
    data: Dataset, summaries: list[Summary], rss_floor_mb: float, lf_source: str
) -> None:
    """Print the report when only one tool ran."""
    print_table(
        data,
        summaries,
        {
            "ratio": float("nan"),
            "median_ratio": float("nan"),
            "ratio_met": False,
            "aim_met": False,
            "logferry_rss_mb": summaries[0].peak_rss_mb,
            "rss_met": summaries[0].peak_rss_mb <= TARGET_RSS_MB,
            "same_lines": summaries[0].all_delivered,
            "rss_floor_mb": rss_floor_mb,
        },
        lf_source,
    )


if __name__ == "__main__":
    sys.exit(main())
