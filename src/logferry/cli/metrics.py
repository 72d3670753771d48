"""``--metrics-port``: Prometheus metrics and health checks for long-running commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from logferry.engine.metrics import METRICS, MetricsServer
from logferry.errors import ConfigError
from logferry.ledger import Ledger, Status


def metrics_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--metrics-port`` and ``--metrics-host`` to a command."""
    func = click.option(
        "--metrics-host",
        default="127.0.0.1",
        show_default=True,
        metavar="HOST",
        help="Address for --metrics-port (0.0.0.0 exposes it to the network).",
    )(func)
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        metavar="PORT",
        help="Serve /metrics, /healthz and /readyz on this port (off by default).",
    )(func)


def _ledger_ready(ledger: Ledger) -> dict[str, str]:
    try:
        ledger.check_writable()
    except Exception as exc:
        return {"ledger": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {}


@contextlib.contextmanager
def serving_metrics(port: int | None, host: str, ledger: Ledger | None) -> Iterator[None]:
    """Serve metrics while the block runs (nothing when ``port`` is None)."""
    if port is None:
        yield
        return
    if ledger is not None:
        queue = METRICS.error_queue
        queue.labels("objects").set_function(lambda: len(ledger.entries(status=Status.FAILED)))
        queue.labels("dead_letters").set_function(lambda: len(ledger.dead_letters()))
    try:
        server = MetricsServer(
            port, host, ready=(lambda: _ledger_ready(ledger)) if ledger is not None else None
        ).start()
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}; "
            "pick another --metrics-port"
        ) from None
    try:
        yield
    finally:
        server.close()
