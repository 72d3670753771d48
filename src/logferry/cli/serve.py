"""``logferry serve`` (the stats API) and ``logferry stats`` (the same numbers as a table)."""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
from datetime import date

import click
from rich.console import Console
from rich.table import Table

from logferry.cli.common import emit_json, fail_usage, handle_errors, safe_text
from logferry.cli.metrics import metrics_options, serving_metrics
from logferry.config import default_store_url
from logferry.errors import ConfigError
from logferry.extras import require
from logferry.stats.queries import Stats, open_stats_store

STORE_HELP = (
    "duckdb:///PATH or influxdb+http://HOST:8086/DB?measurement=M "
    "(default: LOGFERRY_STORE, else the embedded store in the user state directory)."
)


TOKEN_ENV = "LOGFERRY_DASHBOARD_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


@click.command()
@click.option("--store", default=default_store_url, metavar="URL", help=STORE_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--ledger",
    metavar="URL",
    help="Ledger the dashboard shows (default: LOGFERRY_LEDGER or the user state dir).",
)
@click.option(
    "--token",
    envvar=TOKEN_ENV,
    metavar="TOKEN",
    help=f"Token the dashboard's actions need (also {TOKEN_ENV}); default: a new one, printed.",
)
@click.option(
    "--drain-to", metavar="SINK", help="Sink the dashboard's drain form proposes (a --to URL)."
)
@click.option(
    "--sample-every",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds between the dashboard's throughput samples of the ledger.",
)
@metrics_options
@handle_errors
def serve(
    store: str,
    host: str,
    port: int,
    ledger: str | None,
    token: str | None,
    drain_to: str | None,
    sample_every: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Serve the stats API (OpenAPI docs at /docs) and the web dashboard (/dashboard/)."""
    require("stats", "uvicorn", "fastapi", "jinja2")
    import uvicorn

    from logferry.stats.app import create_app
    from logferry.web import DashboardSettings

    if token is not None and not token.strip():
        fail_usage(f"the dashboard token is empty: pass --token or set {TOKEN_ENV}")
    if token is None and not is_loopback(host):
        fail_usage(
            f"refusing to listen on {host} without a token: pass --token or set {TOKEN_ENV} "
            "(actions on the error queue must not be open to the network)"
        )
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    settings = DashboardSettings(ledger, token, drain_to, sample_seconds=sample_every)
    app = create_app(store, settings)
    # Bind here, not in uvicorn: a port in use is a usage error (exit 2, one line), where
    # uvicorn would log a traceback-like error and exit 3.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror or exc
        raise ConfigError(f"cannot listen on {host}:{port}: {why}") from None
    where = f"[{host}]" if family == socket.AF_INET6 else host
    base = f"http://{where}:{sock.getsockname()[1]}"
    click.echo(f"serving on {base} (API docs at /docs, dashboard at {base}/dashboard/)", err=True)
    if generated:
        # The token is printed once, for the person who started the server (invariant 5
        # covers credentials of sources and sinks; this one exists to be handed out).
        click.echo(f"dashboard action token: {token}", err=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
    with serving_metrics(metrics_port, metrics_host, None):
        server.run(sockets=[sock])


def _dates(from_date: str, to_date: str | None) -> tuple[date, date]:
    require("stats", "fastapi")
    from fastapi import HTTPException

    from logferry.stats.app import date_range

    try:
        return date_range(from_date, to_date)
    except HTTPException as exc:
        raise ConfigError(str(exc.detail)) from None


def _cells(s: Stats) -> list[str]:
    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.6f}"

    return [
        f"{s.total_requests:,}",
        f"{s.successful_requests:,}",
        f"{s.failed_requests:,}",
        "-" if s.uptime_percent is None else f"{s.uptime_percent:.3f}",
        secs(s.avg_latency),
        secs(s.median_latency),
        secs(s.p99_latency),
    ]


@click.command()
@click.argument("customer")
@click.option("--from-date", required=True, metavar="YYYY-MM-DD", help="First UTC day.")
@click.option("--to-date", metavar="YYYY-MM-DD", help="Last UTC day, inclusive (default today).")
@click.option("--store", default=default_store_url, metavar="URL", help=STORE_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's response).")
@handle_errors
def stats(customer: str, from_date: str, to_date: str | None, store: str, as_json: bool) -> None:
    """Print CUSTOMER's daily request stats: counts, uptime %, average/median/p99 latency (s)."""
    start, end = _dates(from_date, to_date)
    backend = open_stats_store(store)
    try:
        result = backend.customer_stats(customer, start, end)
    finally:
        backend.close()
    if as_json:
        emit_json(result.model_dump(mode="json"))
        return
    table = Table(title=f"customer {safe_text(customer)}, {start} to {end} (UTC)")
    for col in ("day", "total", "ok", "failed", "uptime %", "avg s", "median s", "p99 s"):
        table.add_column(col, justify="left" if col == "day" else "right")
    for day in result.days:
        table.add_row(day.date.isoformat(), *_cells(day))
    table.add_section()
    table.add_row("total", *_cells(result.total), style="bold")
    Console().print(table)
