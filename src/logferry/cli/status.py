"""``logferry status``: progress per source, from the ledger."""

from __future__ import annotations

import collections
import time
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from logferry.cli.common import emit_json, handle_errors, human_bytes, safe_text
from logferry.ledger import Status, open_ledger


def _when(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


@click.command()
@click.option(
    "--ledger", metavar="URL", help="Ledger URL (default: LOGFERRY_LEDGER or the user state dir)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def status(ledger: str | None, as_json: bool) -> None:
    """Show per source: objects done, failed, in progress, lines, bytes, last shipped."""
    led = open_ledger(ledger, create=False, readonly=True)
    try:
        rows = led.status()
        failed = led.entries(status=Status.FAILED)
        failures = failed[:10]
        letters = led.dead_letters()
    finally:
        led.close()
    now = time.time()
    waiting = collections.Counter(e.source for e in failed)
    dead = collections.Counter(d.source for d in letters)
    if as_json:
        emit_json(
            {
                "ledger": led.display,
                "sources": [
                    {
                        "source": r.source,
                        "done": r.done,
                        "failed": r.failed,
                        "in_progress": r.in_progress,
                        "lines": r.lines,
                        "bytes": r.bytes,
                        "last_shipped": _when(r.last_shipped),
                        # For scripts: how far behind the source looks from the ledger alone
                        # (`--metrics-port` has the live lag: oldest unshipped, bytes behind).
                        "lag": {
                            "seconds_since_last_shipped": None
                            if r.last_shipped is None
                            else round(max(0.0, now - r.last_shipped), 3),
                            "in_progress": r.in_progress,
                            "error_queue": waiting[r.source],
                            "dead_letters": dead[r.source],
                        },
                    }
                    for r in rows
                ],
            }
        )
        return
    console = Console(highlight=False)  # keys are shown as they are, not coloured by guesswork
    if not console.is_terminal:
        console = Console(width=240, highlight=False)  # pipes and logs: never cut source names
    if not rows:
        console.print(f"nothing shipped yet (ledger {safe_text(led.display)})")
        return
    table = Table(title=f"ledger {safe_text(led.display)}")
    for col in ("source", "done", "failed", "in progress", "lines", "bytes", "last shipped"):
        table.add_column(
            col, justify="left" if col in ("source", "last shipped") else "right", overflow="fold"
        )
    for r in rows:
        table.add_row(
            safe_text(r.source),
            str(r.done),
            str(r.failed),
            str(r.in_progress),
            f"{r.lines:,}",
            human_bytes(r.bytes),
            _when(r.last_shipped) or "-",
        )
    console.print(table)
    for e in failures:
        console.print(
            f"[red]failed[/] {safe_text(e.source)} {safe_text(e.key)}: {safe_text(e.last_error)}",
            soft_wrap=True,
        )
