"""``logferry run`` (the daemon) and ``logferry validate``: pipelines from a config file."""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click

from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    FailureLog,
    err,
    handle_errors,
    install_signal_handlers,
    make_progress,
    print_summary,
    safe_text,
)
from logferry.cli.metrics import metrics_options, serving_metrics
from logferry.cli.processes import (
    fan_out,
    forkable,
    pipeline_targets,
    processes_option,
)
from logferry.config import load_pipeline
from logferry.engine import ShipResult
from logferry.engine.processes import Share
from logferry.errors import ConfigErrors
from logferry.ledger import open_ledger
from logferry.pipeline import Daemon, check_pipeline, plans_summary

config_option = click.option(
    "-c", "--config", "config_path", required=True, metavar="FILE",
    help="Pipeline YAML (a path or s3://BUCKET/KEY).",
)  # fmt: skip


def run_pipeline(
    config_path: str,
    *,
    ledger: str | None,
    once: bool,
    as_json: bool,
    quiet: bool,
    shutdown_timeout: float,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    processes: int = 1,
) -> int:
    """Run a pipeline file once or as a daemon (as ``processes`` processes); return the
    exit status."""
    config = load_pipeline(config_path)
    check_pipeline(config)
    led = open_ledger(ledger or config.ledger)
    if processes > 1:
        led.close()  # a connection must not be shared by forked copies
        reload = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") and not once else ()
        code = fan_out(
            processes, follow=not once, as_json=as_json, quiet=quiet, passed_on=reload,
            targets=pipeline_targets(config), fork=forkable(config),
        )  # fmt: skip
        if code is not None:
            return code
        led = open_ledger(ledger or config.ledger)  # this copy's own
    last: list[ShipResult] = []

    verbose = logging.getLogger("logferry").getEffectiveLevel() <= logging.INFO

    def on_cycle(results: list[ShipResult]) -> None:
        last[:] = results
        for result in results:
            # A daemon's idle cycles say nothing (-v shows them): only what happened.
            eventful = bool(
                result.objects or result.lines or result.failed or result.held
                or result.dead_letters or not result.ok
            )  # fmt: skip
            shown = once or verbose or eventful
            print_summary(result, as_json=as_json, quiet=quiet or not shown, final=once)

    def progress(name: str) -> Any:
        # A bar per cycle would flood a daemon's log: only failures and notices, as lines.
        if once or quiet:
            return make_progress(quiet)
        return FailureLog()

    try:
        daemon = Daemon(lambda: load_pipeline(config_path), led, progress, on_cycle)
        install_signal_handlers(daemon.request_shutdown, shutdown_timeout)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
        share = Share.from_env()
        if not once and not quiet and share.index == 0:  # said once, not by every copy
            count = len(config.sources)
            copies = f" in {share.count} processes" if share.shared else ""
            err.print(
                f"running {count} source{'s' if count != 1 else ''} every "
                f"{config.interval:g} s{copies} "
                f"(SIGHUP reloads {safe_text(config_path)}, SIGINT/SIGTERM stop)"
            )
        with serving_metrics(metrics_port, metrics_host, led):
            daemon.run(once=once)
    finally:
        led.close()
    return EXIT_OK if all(r.ok for r in last) else EXIT_FAILED


@click.command()
@config_option
@click.option("--once", is_flag=True, help="One cycle, then exit (cron, tests).")
@click.option("--ledger", metavar="URL", help="Ledger URL (overrides the file's `ledger:`).")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGINT/SIGTERM, seconds to finish and checkpoint the batches in flight.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON summary line per source and cycle.")
@click.option("--quiet", "-q", is_flag=True, help="No progress or summaries on stderr.")
@metrics_options
@processes_option
@handle_errors
def run(config_path: str, once: bool, ledger: str | None, shutdown_timeout: float,
        as_json: bool, quiet: bool, metrics_port: int | None, metrics_host: str,
        processes: int) -> None:  # fmt: skip
    """Run the pipelines of a config file as a daemon: list and catch up every interval.

    SIGHUP reloads the file (an invalid one is rejected and the old one keeps running);
    SIGINT/SIGTERM finish the batches in flight, checkpoint, and exit.
    """
    logging.getLogger("logferry").setLevel(min(logging.getLogger().level, logging.WARNING))
    sys.exit(
        run_pipeline(
            config_path,
            ledger=ledger,
            once=once,
            as_json=as_json,
            quiet=quiet,
            shutdown_timeout=shutdown_timeout,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            processes=processes,
        )
    )


@click.command()
@config_option
@handle_errors
def validate(config_path: str) -> None:
    """Check a pipeline file (schema, references, sink URLs, keys, handlers) without running it.

    Every problem is reported, one line each (FILE:LINE: path: message); exit 2 if any.
    """
    try:
        config = load_pipeline(config_path)
        check_pipeline(config)
    except ConfigErrors as exc:
        for problem in exc.problems:
            err.print(f"[bold red]error:[/] {safe_text(problem)}", soft_wrap=True)
        sys.exit(EXIT_USAGE)
    for line in plans_summary(config):
        click.echo(safe_text(line, markup=False))
    err.print(f"{safe_text(config_path)}: OK")
