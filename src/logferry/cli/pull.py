"""``logferry pull``: download objects as the lines that would be shipped."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from logferry import api
from logferry.cli.common import handle_errors, make_progress, print_summary
from logferry.cli.ship import decode_options, source_options, time_options, time_range
from logferry.config import ShipOptions, SinkOptions, build
from logferry.ledger import SQLiteLedger
from logferry.sinks import ConcatSink, FileSink, Sink


@click.command()
@click.argument("source")
@click.option(
    "--dest", type=click.Path(file_okay=False), help="Directory for one .log file per object."
)
@click.option(
    "--concat",
    type=click.Path(dir_okay=False),
    help="Append every object's lines to this one file.",
)
@click.option(
    "--latest", type=click.IntRange(min=1), metavar="N", help="Only the N newest objects."
)
@time_options
@decode_options
@source_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary as the last line of stdout."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@handle_errors
def pull(
    source: str,
    dest: str | None,
    concat: str | None,
    latest: int | None,
    fmt: str,
    expand: str | None,
    timestamp_fields: tuple[str, ...],
    syslog_timezone: str,
    since: str | None,
    until: str | None,
    endpoint_url: str | None,
    no_verify_tls: bool,
    profile: str | None,
    region: str | None,
    as_json: bool,
    quiet: bool,
    **limits: int,
) -> None:
    """Download the objects of SOURCE, decoded to the lines logferry would ship.

    Writes DEST/<key>.log per object, or one file with --concat (oldest object
    first). The ledger is not touched: pulling never marks anything shipped.
    """
    if not dest and not concat:
        raise click.UsageError("give --dest DIR, --concat FILE, or both")
    sinks: list[Sink] = []
    if dest:
        sinks.append(FileSink(dest, raw=True))
    if concat:
        sinks.append(ConcatSink(concat))
    # A throwaway ledger: pulling never marks anything shipped in the user's.
    scratch = tempfile.TemporaryDirectory(prefix="logferry-pull-")
    ledger = SQLiteLedger(Path(scratch.name) / "ledger.db")
    try:
        options = build(
            ShipOptions,
            mode="latest" if latest else "catchup",
            latest=latest,
            format=fmt,
            expand=expand,
            **({"timestamp_fields": timestamp_fields} if timestamp_fields else {}),
            syslog_timezone=syslog_timezone,
            workers=1 if concat else 4,  # one at a time keeps --concat in object order
            **time_range(since, until),
            **limits,
        )
        assert isinstance(options, ShipOptions)
        result = api.ship(
            source,
            sinks,
            options,
            sink_options=SinkOptions(verify_tls=not no_verify_tls),
            ledger=ledger,
            endpoint_url=endpoint_url,
            profile=profile,
            region=region,
            progress=make_progress(quiet),
        )
    finally:
        ledger.close()
        scratch.cleanup()
    sys.exit(print_summary(result, as_json=as_json, quiet=quiet, verb="pulled"))
