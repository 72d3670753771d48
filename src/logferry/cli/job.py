"""``logferry job``: the IBM Code Engine job entry point (environment-configured)."""

from __future__ import annotations

import sys
import threading

import click

from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    err,
    handle_errors,
    install_signal_handlers,
    make_progress,
    print_summary,
    safe_text,
)


@click.command()
@click.option("--no-catchup", is_flag=True, help="Only ship the object named by CE_DATA.")
@click.option("--json", "as_json", is_flag=True, help="JSON summaries on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def job(no_catchup: bool, as_json: bool, quiet: bool) -> None:
    """Run as an IBM Code Engine job, configured by the environment.

    With CE_DATA (a COS subscription event) ship that object, then catch up the source;
    without, catch up. JOB_INDEX / JOB_ARRAY_SIZE split the catch-up between array
    indices. Reads LOGFERRY_CONFIG, or LOGFERRY_SINKS / LOGDNA_ENDPOINT / LOGDNA_REGION,
    LOGDNA_INGESTION_KEY, LOGFERRY_LEDGER, LOGFERRY_FORMAT, LOGFERRY_SOURCE, COS_BUCKET,
    COS_ENDPOINT, LOGFERRY_BUCKETS (CE_DATA for other buckets is refused). Exits 1 when
    anything failed, so Code Engine retries; 2 for a CE_DATA it cannot read.
    """
    from logferry.serverless.code_engine import run_job

    stop = threading.Event()
    install_signal_handlers(stop)
    results, errors = run_job(catchup=not no_catchup, progress=make_progress(quiet), stop=stop)
    for message in errors:
        err.print(f"[red]failed[/] {safe_text(message)}", soft_wrap=True)
    ok = not errors
    for result in results:
        ok = print_summary(result, as_json=as_json, quiet=quiet) == EXIT_OK and ok
    sys.exit(EXIT_OK if ok else EXIT_FAILED)
