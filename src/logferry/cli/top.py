"""``logferry top``: a live view of running logferry processes, from their metrics endpoints."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
from rich.live import Live
from rich.table import Table

from logferry.cli.common import EXIT_FAILED, EXIT_OK, err, handle_errors, human_bytes, safe_text
from logferry.errors import ConfigError

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def endpoint_url(target: str) -> str:
    """``9108``, ``host:9108`` or ``http://host:9108`` as a base URL."""
    text = target.strip().rstrip("/")
    if text.isdigit():
        return f"http://127.0.0.1:{text}"
    if "://" not in text:
        text = f"http://{text}"
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"bad endpoint {target!r}: use PORT, HOST:PORT or http://HOST:PORT")
    return text.removesuffix("/metrics")


def scrape(client: httpx.Client, base: str) -> tuple[Samples, dict[str, str] | None]:
    """The samples of ``base``/metrics and the problems ``/readyz`` reports (None: ready)."""
    text = client.get(f"{base}/metrics").raise_for_status().text
    samples = {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ready = client.get(f"{base}/readyz")
    problems = None if ready.status_code == 200 else dict(ready.json().get("problems") or {})
    return samples, problems


@dataclass
class Row:
    """One pipeline (source → sink) as ``top`` shows it."""

    records: float = 0.0
    bytes: float = 0.0
    rate: float = 0.0
    byte_rate: float = 0.0
    failures: float = 0.0
    lag: list[str] = field(default_factory=list)


def summarize(now: Samples, before: Samples | None, seconds: float) -> dict[tuple[str, str], Row]:
    """Per (source, sink): totals, rates since ``before``, failures and lag."""
    rows: dict[tuple[str, str], Row] = defaultdict(Row)
    for (name, labels), value in now.items():
        lab = dict(labels)
        key = (lab.get("source", ""), lab.get("sink", ""))
        if name in ("logferry_records_total", "logferry_bytes_total"):
            old = (before or {}).get((name, labels), value)
            rate = max(0.0, value - old) / seconds if seconds > 0 else 0.0
            row = rows[key]
            if name == "logferry_records_total":
                row.records, row.rate = value, rate
            else:
                row.bytes, row.byte_rate = value, rate
    lags: dict[str, list[str]] = defaultdict(list)
    failures: dict[str, float] = defaultdict(float)
    for (name, labels), value in now.items():
        source = dict(labels).get("source", "")
        if name == "logferry_failures_total":
            failures[source] += value
        elif name == "logferry_oldest_unshipped_age_seconds" and value:
            lags[source].append(f"oldest {value:.0f} s")
        elif name == "logferry_bytes_behind" and value:
            lags[source].append(f"{human_bytes(int(value))} behind")
        elif name == "logferry_ingestion_delay_seconds":
            lags[source].append(f"delay {value:.1f} s")
    for (source, _), row in rows.items():
        row.failures = failures.get(source, 0.0)
        row.lag = lags.get(source, [])
    return dict(rows)


def render(base: str, rows: dict[tuple[str, str], Row], problems: dict[str, str] | None) -> Table:
    """The table of one endpoint."""
    state = (
        "ready"
        if problems is None
        else "NOT READY: " + "; ".join(f"{name}: {why}" for name, why in problems.items())
    )
    table = Table(title=safe_text(f"{base}  ({state})"), title_justify="left", expand=False)
    for column in ("source", "sink", "records/s", "MB/s", "records", "failed", "lag"):
        table.add_column(column, justify="right" if column not in ("source", "sink") else "left")
    for (source, sink), row in sorted(rows.items()):
        table.add_row(
            safe_text(source),
            safe_text(sink),
            f"{row.rate:,.0f}",
            f"{row.byte_rate / 1e6:.2f}",
            f"{row.records:,.0f}",
            f"{row.failures:,.0f}",
            safe_text(", ".join(row.lag) or "-"),
        )
    if not rows:
        table.add_row("(nothing shipped yet)", "", "", "", "", "", "")
    return table


@click.command()
@click.argument("endpoints", nargs=-1, required=True, metavar="ENDPOINT...")
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
    help="Seconds between refreshes.",
)  # fmt: skip
@click.option("--once", is_flag=True, help="Print one snapshot and exit (for scripts).")
@handle_errors
def top(endpoints: tuple[str, ...], interval: float, once: bool) -> None:
    """Live view of logferry processes started with --metrics-port: rates, lag, failures.

    ENDPOINT is PORT, HOST:PORT or http://HOST:PORT (repeatable). Exit 1 when an endpoint
    does not answer.
    """
    bases = [endpoint_url(e) for e in endpoints]
    previous: dict[str, tuple[Samples, float]] = {}
    with httpx.Client(timeout=5.0) as client:

        def snapshot() -> tuple[Group, bool]:
            tables: list[Table | str] = []
            ok = True
            for base in bases:
                try:
                    samples, problems = scrape(client, base)
                except (httpx.HTTPError, ValueError) as exc:
                    ok = False
                    reason = safe_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                    tables.append(
                        f"[red]nothing answers at {safe_text(base)}[/] ({reason}): start the "
                        "command with --metrics-port PORT, or check the address"
                    )
                    continue
                now = time.monotonic()
                before, then = previous.get(base, (None, now))
                previous[base] = (samples, now)
                tables.append(render(base, summarize(samples, before, now - then), problems))
            return Group(*tables), ok

        if once:
            group, ok = snapshot()
            err.print(group)
            sys.exit(EXIT_OK if ok else EXIT_FAILED)
        with Live(snapshot()[0], console=err, refresh_per_second=4) as live:
            try:
                while True:
                    time.sleep(interval)
                    live.update(snapshot()[0])
            except KeyboardInterrupt:
                return
