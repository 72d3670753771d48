"""``logferry errors`` and ``logferry drain``: the error queue kept in the ledger."""

from __future__ import annotations

import sys
from collections import defaultdict
from datetime import UTC, datetime

import click

from logferry import api
from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    emit_json,
    err,
    fail_usage,
    handle_errors,
    human_bytes,
    json_text,
    make_progress,
    safe_text,
)
from logferry.cli.ship import source_options
from logferry.ledger import Entry, Status, open_ledger
from logferry.sources import is_stream_url, open_source

ledger_option = click.option(
    "--ledger", metavar="URL", help="Ledger URL (default: LOGFERRY_LEDGER or the user state dir)."
)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_dict(e: Entry) -> dict[str, object]:
    return {
        "id": e.id,
        "source": e.source,
        "key": e.key,
        "etag": e.etag,
        "size": e.size,
        "error_class": e.error_class,
        "error": e.last_error,
        "attempts": e.attempts,
        "position": e.position,
        "first_seen": _when(e.first_seen),
        "last_attempt": _when(e.updated),
    }


def _source_id(url: str | None, endpoint_url: str | None) -> str | None:
    if url is None:
        return None
    src = open_source(url, endpoint_url=endpoint_url)
    src.close()
    return src.id


@click.group(invoke_without_command=True)
@click.option("--source", metavar="URL", help="Only errors of this source (e.g. s3://bucket).")
@ledger_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
@handle_errors
def errors(ctx: click.Context, source: str | None, ledger: str | None, as_json: bool) -> None:
    """List objects that failed: time, id, source, key, size, error (one per line)."""
    if ctx.invoked_subcommand is not None:
        return
    led = open_ledger(ledger)
    try:
        rows = led.entries(source=_source_id(source, None), status=Status.FAILED)
    finally:
        led.close()
    for e in rows:
        if as_json:
            click.echo(json_text(_as_dict(e)))
        else:
            source, key, error = (
                safe_text(t, markup=False) for t in (e.source, e.key, e.last_error)
            )
            click.echo(
                f"{_when(e.updated)}  #{e.id}  {source}  {key}  {human_bytes(e.size)}  "
                f"{safe_text(e.error_class or 'error', markup=False)}: {error}"
            )
    if not rows and not as_json:
        err.print("the error queue is empty")


@errors.command("show")
@click.argument("entry_id", type=int)
@ledger_option
@handle_errors
def errors_show(entry_id: int, ledger: str | None) -> None:
    """Show everything the ledger knows about one error."""
    led = open_ledger(ledger)
    try:
        e = led.entry(entry_id)
    finally:
        led.close()
    if e is None:
        fail_usage(f"no entry #{entry_id} in the ledger: `logferry errors` lists the ids")
        return
    emit_json({**_as_dict(e), "status": str(e.status)})


@errors.command("purge")
@click.option("--yes", is_flag=True, help="Really forget the errors (required).")
@click.option("--source", metavar="URL", help="Only errors of this source.")
@click.option("--id", "ids", type=int, multiple=True, help="Only these ids (repeatable).")
@ledger_option
@handle_errors
def errors_purge(yes: bool, source: str | None, ids: tuple[int, ...], ledger: str | None) -> None:
    """Forget failed objects; the next catchup tries them again from the start."""
    if not yes:
        raise click.UsageError("purge forgets errors for good: add --yes")
    led = open_ledger(ledger)
    try:
        n = led.purge_failed(ids or None, _source_id(source, None))
    finally:
        led.close()
    err.print(f"purged {n} entries from the error queue")


@click.command()
@click.option(
    "--to", "sinks", multiple=True, required=True, metavar="SINK", help="Sink URL (repeatable)."
)
@click.option("--id", "ids", type=int, multiple=True, help="Only these error ids (repeatable).")
@click.option(
    "--source", metavar="URL", help="Only errors of this source; also how to reach it (cos://…)."
)
@ledger_option
@source_options
@click.option("--format", "fmt", default="auto", show_default=True, help="Format to decode with.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def drain(
    sinks: tuple[str, ...],
    ids: tuple[int, ...],
    source: str | None,
    ledger: str | None,
    endpoint_url: str | None,
    no_verify_tls: bool,
    fmt: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Retry failed objects; only those that now ship leave the error queue.

    Each retry resumes at the object's last acknowledged position. Exit 1 when any
    object still fails.
    """
    led = open_ledger(ledger)
    try:
        wanted = _source_id(source, endpoint_url)
        entries = [
            e for e in led.entries(source=wanted, status=Status.FAILED) if not ids or e.id in ids
        ]
        missing = set(ids) - {e.id for e in entries}
        if missing:
            fail_usage(f"not in the error queue: {', '.join(f'#{i}' for i in sorted(missing))}")
        by_source: dict[str, list[Entry]] = defaultdict(list)
        streamed = [e for e in entries if is_stream_url(e.source)]
        for e in entries:
            if not is_stream_url(e.source):
                by_source[e.source].append(e)
        if streamed and not quiet:
            # A stream's records cannot be read again on demand: they were shipped raw
            # (malformed) or refused (a record range); look at them, then purge them.
            err.print(
                f"{len(streamed)} entries are stream records, which drain cannot re-read: "
                "see `logferry errors`, then `logferry errors purge --yes --id …`"
            )
        drained, still = 0, []
        for source_id, group in by_source.items():
            url = source if source is not None else source_id
            result = api.ship(
                url,
                list(sinks),
                key=sorted({e.key for e in group}),
                ledger=led,
                format=fmt,
                endpoint_url=endpoint_url,
                verify_tls=not no_verify_tls,
                max_attempts=1_000_000,  # draining is the explicit "try again"
                progress=make_progress(quiet),
            )
            failed = {f.key: f.error for f in result.failed}
            for e in group:
                if e.key in failed:
                    still.append({"id": e.id, "key": e.key, "error": failed[e.key]})
                    continue
                drained += 1
                # The object shipped; a row left failed is an older version of it: forget it.
                current = led.entry(e.id)
                if current is not None and current.status == Status.FAILED:
                    led.purge_failed([e.id])
    finally:
        led.close()
    if as_json:
        sys.stdout.write(json_text({"drained": drained, "failed": still}) + "\n")
    if not quiet:
        err.print(f"drained {drained} objects; {len(still)} still failing")
        for s in still:
            err.print(
                f"  [red]failed[/] #{s['id']} {safe_text(s['key'])}: {safe_text(s['error'])}",
                soft_wrap=True,
            )
    sys.exit(EXIT_FAILED if still else EXIT_OK)
