"""Benchmark: download the same CloudWatch Logs events with logferry and with ``awslogs``.

One run:

1. Starts moto in server mode on loopback (in this process) and puts ``--streams`` streams
   of ``--events`` events each into one log group (messages are unique and name their stream).
2. Times, each in its own subprocess against that endpoint:

   * ``logferry download``: ``python -m logferry.cli.cloudwatch download --group-prefix G
     --dir TMP`` (one file per stream, GetLogEvents per stream, 8 threads, default quotas);
   * ``logferry get``: ``python -m logferry.cli.cloudwatch get G --start 1d`` to stdout
     (FilterLogEvents, interleaved), the same kind of work awslogs does;
   * ``awslogs get``: ``awslogs get G ALL --start 1d -G --aws-endpoint-url URL`` to stdout.

3. Checks that each saw exactly the events that were put (stream, message multiset) and prints
   the times and the awslogs/logferry ratios.

``awslogs`` is not a logferry dependency: ``pip install awslogs`` first (the script says so
and skips it when missing). Usage::

    python bench/cloudwatch_download.py                       # 20 streams x 5,000 events
    python bench/cloudwatch_download.py --streams 5 --events 1000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import boto3

Events = Counter[tuple[str, str]]


def populate(endpoint: str, group: str, streams: int, events: int) -> Events:
    """Put the events; return the (stream, message) multiset."""
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1")
    logs.create_log_group(logGroupName=group)
    base = int(time.time() * 1000) - 3_600_000
    expected: Events = Counter()
    for s in range(streams):
        name = f"app/instance-{s:03d}"
        logs.create_log_stream(logGroupName=group, logStreamName=name)
        batch = [
            {
                "timestamp": base + i * 7 + s,
                "message": f"{name} event {i:06d} status=200 path=/api/v1/items/{i % 97}",
            }
            for i in range(events)
        ]
        for i in range(0, len(batch), 5000):
            logs.put_log_events(
                logGroupName=group, logStreamName=name, logEvents=batch[i : i + 5000]
            )
        expected.update((name, e["message"]) for e in batch)
    return expected


def run_timed(cmd: list[str], env: dict[str, str], stdout_path: Path | None) -> float:
    """Run ``cmd``; return wall seconds (fail loudly on a non-zero exit)."""
    t0 = time.perf_counter()
    with open(stdout_path or os.devnull, "wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{cmd[0:4]} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return seconds


def read_download(root: Path) -> Events:
    """(stream, message) from logferry's files: the stream name is the message's first word."""
    seen: Events = Counter()
    for path in root.rglob("*.log"):
        for line in path.read_text().splitlines():
            seen[(line.split(" ", 1)[0], line)] += 1
    return seen


def read_get_output(path: Path) -> Events:
    """(stream, message) from ``STREAM MESSAGE`` lines (awslogs pads the stream column)."""
    seen: Events = Counter()
    for line in path.read_text().splitlines():
        stream, message = line.split(None, 1)
        seen[(stream, message)] += 1
    return seen


def main() -> None:
    """Parse arguments, run each tool ``--repeat`` times, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--events", type=int, default=5000, help="events per stream")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench-key-id")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    group = f"/bench/{uuid.uuid4().hex[:8]}"
    total = args.streams * args.events
    print(f"putting {args.streams} streams x {args.events:,} events = {total:,} events into moto …")
    expected = populate(endpoint, group, args.streams, args.events)

    awslogs = shutil.which("awslogs")
    if awslogs is None:
        print("awslogs is not installed: `pip install awslogs` to compare (skipping it)")
    work = Path(tempfile.mkdtemp(prefix="cw-bench-"))
    py = sys.executable
    tools: dict[str, tuple[list[str], str]] = {
        "logferry download": (
            [py, "-m", "logferry.cli.cloudwatch", "download", "--group-prefix", group],
            "dir",
        ),
        "logferry get": (
            [py, "-m", "logferry.cli.cloudwatch", "get", group, "--start", "1d"],
            "stdout",
        ),
    }
    if awslogs:
        tools["awslogs get"] = (
            [
                awslogs,
                "get",
                group,
                "ALL",
                "--start",
                "1d",
                "-G",
                "--aws-endpoint-url",
                endpoint,
                "--aws-region",
                "us-east-1",
            ],
            "stdout",
        )
    times: dict[str, list[float]] = {name: [] for name in tools}
    same: dict[str, bool] = {}
    for r in range(args.repeat):
        for name, (cmd, kind) in tools.items():
            out = work / f"{name.replace(' ', '-')}-{r}"
            if kind == "dir":
                seconds = run_timed([*cmd, "--dir", str(out)], env, None)
                seen = read_download(out)
            else:
                seconds = run_timed(cmd, env, out)
                seen = read_get_output(out)
            times[name].append(seconds)
            same[name] = same.get(name, True) and seen == expected
            if seen != expected:
                missing = sum((expected - seen).values())
                extra = sum((seen - expected).values())
                print(f"  {name}: run {r}: {missing} events missing, {extra} extra")
    server.stop()
    shutil.rmtree(work, ignore_errors=True)

    print(
        f"\n{total:,} events in {args.streams} streams, moto server on loopback, best of {args.repeat}"
    )
    print(f"{'tool':<20} {'best s':>8} {'median s':>9} {'events/s':>10}  same events")
    for name, ts in times.items():
        best = min(ts)
        print(
            f"{name:<20} {best:>8.2f} {statistics.median(ts):>9.2f} {total / best:>10,.0f}  {same[name]}"
        )
    if awslogs:
        base = min(times["awslogs get"])
        for name in ("logferry download", "logferry get"):
            print(f"awslogs get / {name}: {base / min(times[name]):.2f}x")


if __name__ == "__main__":
    main()
