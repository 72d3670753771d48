"""``logferry errors`` and ``logferry drain``: the error queue kept in the ledger."""

from __future__ import annotations

import sys
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
from logferry.config import ShipOptions, SinkOptions, build
from logferry.engine.drain import parse_ids, source_id_of
from logferry.ledger import Entry, Status, open_ledger
from logferry.ledger.dead_letters import DeadLetter

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


def _letter_dict(d: DeadLetter) -> dict[str, object]:
    return {
        "id": d.label,
        "source": d.source,
        "key": d.key,
        "etag": d.etag,
        "records": [d.start, d.end],
        "sink": d.sink,
        "error_class": d.error_class,
        "error": d.error,
        "bytes": d.nbytes,
        "first_seen": _when(d.created),
    }


def _from_group(ctx: click.Context, name: str, own: str | None) -> str | None:
    """A subcommand's ``--ledger``/``--source``, else the one given to ``errors`` itself.

    ``logferry errors --ledger L purge`` must purge L: a destructive command never
    falls back to another ledger because the option sat before its name.
    """
    if own is not None:
        return own
    parent = ctx.parent
    value = parent.params.get(name) if parent is not None else None
    return value if isinstance(value, str) else None


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
    led = open_ledger(ledger, create=False, readonly=True)
    try:
        wanted = source_id_of(source) if source is not None else None
        rows = led.entries(source=wanted, status=Status.FAILED)
        letters = led.dead_letters(wanted)
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
    for d in letters:
        if as_json:
            click.echo(json_text(_letter_dict(d)))
        else:
            source, key, error = (
                safe_text(t, markup=False) for t in (d.source, d.range_key, d.error)
            )
            click.echo(
                f"{_when(d.created)}  #{d.label}  {source}  {key}  {d.end - d.start} records  "
                f"{safe_text(d.error_class, markup=False)}: {error}"
            )
    if not rows and not letters and not as_json:
        err.print("the error queue is empty")


@errors.command("show")
@click.argument("entry_id")
@ledger_option
@click.pass_context
@handle_errors
def errors_show(ctx: click.Context, entry_id: str, ledger: str | None) -> None:
    """Show everything the ledger knows about one error (12, or D3 for a dead letter)."""
    picked = parse_ids([entry_id])
    assert picked is not None
    objects, letters = picked
    led = open_ledger(_from_group(ctx, "ledger", ledger), create=False, readonly=True)
    try:
        e = led.entry(next(iter(objects))) if objects else None
        d = led.dead_letters(ids=letters) if letters else []
    finally:
        led.close()
    if d:
        emit_json(_letter_dict(d[0]))
        return
    if e is None:
        fail_usage(f"no entry #{entry_id} in the ledger: `logferry errors` lists the ids")
        return
    emit_json({**_as_dict(e), "status": str(e.status)})


@errors.command("purge")
@click.option("--yes", is_flag=True, help="Really forget the errors (required).")
@click.option("--source", metavar="URL", help="Only errors of this source.")
@click.option("--id", "ids", multiple=True, help="Only these ids, e.g. 12 or D3 (repeatable).")
@ledger_option
@click.pass_context
@handle_errors
def errors_purge(
    ctx: click.Context, yes: bool, source: str | None, ids: tuple[str, ...], ledger: str | None
) -> None:
    """Forget errors: failed objects are tried again from the start by the next catchup;
    dead letters (D...) are deleted with their records."""
    if not yes:
        raise click.UsageError("purge forgets errors for good: add --yes")
    picked = parse_ids(ids)
    led = open_ledger(_from_group(ctx, "ledger", ledger), create=False)
    try:
        source = _from_group(ctx, "source", source)
        wanted = source_id_of(source) if source is not None else None
        n = led.purge_failed(None if picked is None else picked[0], wanted)
        letters = led.dead_letters(wanted, None if picked is None else picked[1])
        n += led.remove_dead_letters(d.id for d in letters)
    finally:
        led.close()
    err.print(f"purged {n} entries from the error queue")


@click.command()
@click.option(
    "--to", "sinks", multiple=True, required=True, metavar="SINK", help="Sink URL (repeatable)."
)
@click.option(
    "--id", "ids", multiple=True, help="Only these error ids, e.g. 12 or D3 (repeatable)."
)
@click.option(
    "--source", metavar="URL", help="Only errors of this source; also how to reach it (cos://…)."
)
@ledger_option
@source_options
@click.option("--format", "fmt", default="auto", show_default=True, help="Format to decode with.")
@click.option(
    "--retry-timeout",
    type=click.FloatRange(min=0.001),
    default=60.0,
    show_default=True,
    help="Seconds to retry a sink that keeps failing before giving up on an entry.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def drain(
    sinks: tuple[str, ...],
    ids: tuple[str, ...],
    source: str | None,
    ledger: str | None,
    endpoint_url: str | None,
    no_verify_tls: bool,
    profile: str | None,
    region: str | None,
    fmt: str,
    retry_timeout: float,
    as_json: bool,
    quiet: bool,
) -> None:
    """Retry the error queue; only what now ships leaves it.

    Failed objects are read again from their source and resume at their last acknowledged
    position; dead letters (records a sink refused, ids D1, D2…) are delivered from the
    ledger. Exit 1 when anything still fails.
    """
    options = build(ShipOptions, format=fmt, retry_timeout=retry_timeout)
    assert isinstance(options, ShipOptions)
    led = open_ledger(ledger, create=False)
    try:
        result = api.drain(
            list(sinks),
            ledger=led,
            ids=list(ids),
            source=source,
            options=options,
            sink_options=SinkOptions(verify_tls=not no_verify_tls),
            endpoint_url=endpoint_url,
            profile=profile,
            region=region,
            progress=make_progress(quiet),
        )
    finally:
        led.close()
    if as_json:
        sys.stdout.write(json_text(result.to_dict()) + "\n")
    if not quiet:
        if result.partitions:
            err.print(
                f"{result.partitions} failed stream partitions are retried by the next run "
                "of their source, not by drain"
            )
        err.print(
            f"drained {result.drained} entries ({result.lines:,} lines); "
            f"{len(result.failed)} still failing"
        )
        for s in result.failed:
            err.print(
                f"  [red]failed[/] #{s['id']} {safe_text(s['key'])}: {safe_text(s['error'])}",
                soft_wrap=True,
            )
    sys.exit(EXIT_FAILED if result.failed else EXIT_OK)
