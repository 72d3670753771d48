"""``logferry ledger prune``: forget old done objects so the ledger stays small."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from logferry.cli.common import emit_json, err, handle_errors, safe_text
from logferry.errors import ConfigError
from logferry.ledger import open_ledger
from logferry.ledger.prune import NOT_PRUNABLE
from logferry.ledger.sql import SqlLedger
from logferry.timeparse import parse_time

#: How far in the past --before must be at least (seconds).
MIN_AGE = 3600

ledger_option = click.option(
    "--ledger", metavar="URL", help="Ledger URL (default: LOGFERRY_LEDGER or the user state dir)."
)


@click.group()
def ledger() -> None:
    """Look after the ledger itself."""


@ledger.command()
@click.option(
    "--before",
    "before_text",
    required=True,
    metavar="TIME",
    help="Prune objects done and last modified before this (2024-01-01, 90d, epoch).",
)
@click.option("--source", metavar="SOURCE_ID", help="Only this source (as `status` names it).")
@click.option("--dry-run", is_flag=True, help="Only count what would be pruned, per source.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@ledger_option
@handle_errors
def prune(
    before_text: str, source: str | None, dry_run: bool, as_json: bool, ledger: str | None
) -> None:
    """Delete DONE rows of objects finished and last modified before --before.

    Each source pruned gets a watermark: from then on, its objects last modified before
    --before that the ledger does not know count as shipped, so a listing skips them. Prune
    only what can never arrive again unshipped: objects older than anything still to be
    shipped (nothing pending or failed from then: see `logferry status` and `errors`).
    Totals in `status` keep counting pruned objects.
    """
    before_ms = parse_time(before_text)
    if before_ms > (time.time() - MIN_AGE) * 1000:
        # Listings give times to the second and clocks of buckets and runners differ: an
        # object arriving now must never fall under the watermark.
        when = "is in the future" if before_ms > time.time() * 1000 else "is less than an hour ago"
        raise ConfigError(f"--before {before_text!r} {when}: prune only history (90d, say)")
    led = open_ledger(ledger, create=False)
    try:
        if not isinstance(led, SqlLedger):
            raise ConfigError(f"ledger {led.display} cannot be pruned")
        result = led.prune(before_ms, source, dry_run=dry_run)
    finally:
        led.close()
    when = datetime.fromtimestamp(before_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if as_json:
        key = "would_prune" if dry_run else "pruned"
        emit_json({key: result.total, "before": when, "sources": result.rows,
                   "kept": result.kept, "seconds": round(result.seconds, 3)})  # fmt: skip
        return
    verb = "would prune" if dry_run else "pruned"
    for src, n in sorted(result.rows.items()):
        err.print(f"  {safe_text(src, markup=False)}: {n} objects")
    for src in result.kept:
        err.print(f"  {safe_text(src, markup=False)}: kept ({NOT_PRUNABLE})")
    rate = ""
    if not dry_run and result.total and result.seconds > 0:
        rate = f" ({result.total / result.seconds:,.0f} rows/s)"
    err.print(f"{verb} {result.total} done objects finished before {when}{rate}")
