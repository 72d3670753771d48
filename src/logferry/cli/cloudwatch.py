"""``logferry cloudwatch …``: browse groups and streams, get/follow events, download, status."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from logferry.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    emit_json,
    err,
    handle_errors,
    human_bytes,
    safe_text,
)
from logferry.cli.metrics import metrics_options, serving_metrics
from logferry.cloudwatch.client import LogsClient, RateLimiter
from logferry.cloudwatch.download import Downloader, resolve_options
from logferry.cloudwatch.get import GetQuery, follow_events, get_events
from logferry.cloudwatch.status import collect_status
from logferry.errors import ConfigError
from logferry.timeparse import format_ms, parse_time

F = Callable[..., Any]


def _aws_options(func: F) -> F:
    func = click.option(
        "--region",
        envvar="AWS_REGION",
        help="AWS region (default: the AWS config / AWS_DEFAULT_REGION).",
    )(func)
    func = click.option(
        "--profile",
        envvar="AWS_PROFILE",
        help="AWS profile of ~/.aws/config (default: AWS_PROFILE, else the default chain).",
    )(func)
    return click.option(
        "--endpoint-url",
        envvar="AWS_ENDPOINT_URL",
        help="CloudWatch Logs endpoint (LocalStack, moto); default AWS_ENDPOINT_URL or AWS.",
    )(func)


def _client(endpoint_url: str | None, region: str | None, profile: str | None) -> LogsClient:
    return LogsClient(
        endpoint_url=endpoint_url, region=region, profile=profile, limiter=RateLimiter()
    )


@click.group("cloudwatch")
def cloudwatch() -> None:
    """CloudWatch Logs: list groups and streams, get or follow events, download to files."""


@cloudwatch.command("groups")
@click.option("--prefix", default="", help="Only groups whose name starts with this.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every group.")
@_aws_options
@handle_errors
def groups_cmd(
    prefix: str, as_json: bool, endpoint_url: str | None, region: str | None, profile: str | None
) -> None:
    """List log groups, one name per line."""
    groups = list(_client(endpoint_url, region, profile).groups(prefix))
    if as_json:
        emit_json(
            [
                {
                    "name": g["logGroupName"],
                    "created_ms": g.get("creationTime"),
                    "stored_bytes": g.get("storedBytes", 0),
                }
                for g in groups
            ]
        )
        return
    for g in groups:
        click.echo(safe_text(g["logGroupName"], markup=False))


@cloudwatch.command("streams")
@click.argument("group")
@click.option("--prefix", default="", help="Only streams whose name starts with this.")
@click.option(
    "--order",
    type=click.Choice(["name", "last-event"]),
    default="name",
    show_default=True,
    help="By name, or the stream with the newest event first.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document with every stream.")
@_aws_options
@handle_errors
def streams_cmd(
    group: str,
    prefix: str,
    order: str,
    as_json: bool,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
) -> None:
    """List the streams of GROUP with first/last event time and stored bytes."""
    rows = [
        {
            "name": s["logStreamName"],
            "first_event_ms": s.get("firstEventTimestamp"),
            "last_event_ms": s.get("lastEventTimestamp"),
            "stored_bytes": s.get("storedBytes", 0) or 0,
        }
        for s in _client(endpoint_url, region, profile).streams(group, prefix, order)
    ]
    if as_json:
        emit_json(rows)
        return
    out = Console(highlight=False)
    if out.is_terminal:
        table = Table("stream", "first event (UTC)", "last event (UTC)", "stored", box=None)
        for r in rows:
            table.add_row(
                safe_text(r["name"]),
                format_ms(r["first_event_ms"]),
                format_ms(r["last_event_ms"]),
                human_bytes(r["stored_bytes"]),
            )
        out.print(table)
        return
    for r in rows:  # tab-separated for scripts
        click.echo(
            f"{safe_text(r['name'], markup=False)}\t{format_ms(r['first_event_ms'])}\t{format_ms(r['last_event_ms'])}\t{r['stored_bytes']}"
        )


class _Printer:
    """Formats events: colour on a terminal, plain text in pipes, JSON lines with --json."""

    def __init__(
        self,
        *,
        timestamp: bool,
        ingestion_time: bool,
        show_stream: bool,
        as_json: bool,
        query: str | None,
    ) -> None:
        self.timestamp = timestamp
        self.ingestion_time = ingestion_time
        self.show_stream = show_stream
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        self.colour = self.console.is_terminal
        self._query = None
        if query:
            import jmespath
            from jmespath.exceptions import JMESPathError

            try:
                self._query = jmespath.compile(query)
            except JMESPathError as exc:
                raise ConfigError(f"--query {query!r}: {exc}") from None

    def _message(self, message: str) -> str:
        text = message.rstrip("\r\n")
        if self._query is None:
            return text
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text  # not JSON: shown as it is
        result = self._query.search(doc)
        return result if isinstance(result, str) else orjson.dumps(result).decode()

    def __call__(self, event: dict[str, Any]) -> None:
        message = self._message(event["message"])
        stream = event.get("logStreamName", "")
        if self.as_json:
            doc = {
                "stream": stream,
                "timestamp": event["timestamp"],
                "ingestionTime": event.get("ingestionTime"),
                "eventId": event.get("eventId"),
                "message": message,
            }
            sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
            sys.stdout.flush()
            return
        parts: list[tuple[str, str]] = []
        if self.show_stream:
            parts.append((stream, "cyan"))
        if self.timestamp:
            parts.append((format_ms(event["timestamp"]), "green"))
        if self.ingestion_time:
            parts.append((format_ms(event.get("ingestionTime")), "blue"))
        if self.colour:
            prefix = " ".join(f"[{style}]{safe_text(text)}[/]" for text, style in parts)
            self.console.print((prefix + " " if prefix else "") + safe_text(message))
        else:
            prefix = " ".join(text for text, _ in parts)
            sys.stdout.write((prefix + " " if prefix else "") + message + "\n")
            sys.stdout.flush()


@cloudwatch.command("get")
@click.argument("group")
@click.argument("stream_regex", required=False)
@click.option(
    "-s",
    "--start",
    default="5m",
    show_default=True,
    help="From: 5m, 2h ago, 1d, ISO 8601 or epoch.",
)
@click.option("-e", "--end", default=None, help="Until (same forms); default: now.")
@click.option("--filter-pattern", default=None, help="CloudWatch filter pattern.")
@click.option(
    "-f",
    "-w",
    "--follow",
    is_flag=True,
    help="Keep printing new events (new streams included).",
)
@click.option("-t", "--timestamp", is_flag=True, help="Print the event time (UTC).")
@click.option("-i", "--ingestion-time", is_flag=True, help="Print the ingestion time (UTC).")
@click.option("--no-stream", is_flag=True, help="Do not print the stream name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--query", default=None, help="JMESPath applied to JSON messages.")
@click.option(
    "--poll-interval",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between polls with --follow.",
)
@click.option(
    "--lookback",
    default="2m",
    show_default=True,
    help="With --follow, how far behind the newest event late events are still caught.",
)
@_aws_options
@handle_errors
def get_cmd(
    group: str,
    stream_regex: str | None,
    start: str,
    end: str | None,
    filter_pattern: str | None,
    follow: bool,
    timestamp: bool,
    ingestion_time: bool,
    no_stream: bool,
    as_json: bool,
    query: str | None,
    poll_interval: float,
    lookback: str,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
) -> None:
    """Print the events of GROUP (streams matching STREAM_REGEX), interleaved in time order."""
    import re

    if stream_regex:
        try:
            re.compile(stream_regex)
        except re.error as exc:
            raise ConfigError(f"STREAM_REGEX {stream_regex!r}: {exc}") from None
    now = int(time.time() * 1000)
    q = GetQuery(
        group,
        stream_regex,
        start_ms=parse_time(start, now_ms=now),
        end_ms=parse_time(end, now_ms=now) if end else None,
        filter_pattern=filter_pattern,
    )
    lookback_ms = now - parse_time(lookback, now_ms=now)
    printer = _Printer(
        timestamp=timestamp,
        ingestion_time=ingestion_time,
        show_stream=not no_stream,
        as_json=as_json,
        query=query,
    )
    client = _client(endpoint_url, region, profile)
    try:
        if not follow:
            for event in get_events(client, q):
                printer(event)
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        for event in follow_events(
            client, q, stop=stop, poll_interval=poll_interval, lookback_ms=lookback_ms
        ):
            printer(event)
    except BrokenPipeError:
        # `| head` closed the pipe: not an error; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@cloudwatch.command("download")
@click.option(
    "--group-prefix",
    default=None,
    help="Log groups whose name starts with this [LOG_GROUP_NAME_PREFIX].",
)
@click.option(
    "--streams", default=None, help="Only these streams, comma-separated [LOG_STREAMS_FILTER]."
)
@click.option("--stream-regex", default=None, help="Only streams whose name matches (re.search).")
@click.option("--dir", "directory", default=None, help="Where the files go [AWS_LOGS_DIRECTORY].")
@click.option("--follow/--no-follow", default=None, help="Keep downloading new events and streams.")
@click.option(
    "--start",
    default=None,
    help="Streams without state start here (5m, 1d, ISO, epoch); default: their head.",
)
@click.option(
    "--json/--lines",
    "as_json",
    default=None,
    help="JSON lines (timestamp, ingestionTime, message) instead of messages.",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML file with these options (re-read on SIGHUP).",
)
@click.option(
    "--concurrency", type=int, default=None, help="Streams downloaded at once (default 8)."
)
@click.option(
    "--get-rate",
    type=float,
    default=None,
    help="GetLogEvents per second, all threads (default 25).",
)
@click.option(
    "--describe-rate",
    type=float,
    default=None,
    help="DescribeLogStreams/Groups per second (default 5).",
)
@click.option(
    "--discover-interval",
    type=float,
    default=None,
    help="Seconds between looks for new groups and streams (default 60).",
)
@click.option(
    "--poll-interval",
    type=float,
    default=None,
    help="Seconds between polls of a caught-up stream (default 5).",
)
@click.option(
    "--page-size",
    type=int,
    default=None,
    help="Events per GetLogEvents call (default and maximum 10000).",
)
@click.option(
    "--status-port",
    type=int,
    default=None,
    help="Serve status JSON on 127.0.0.1:PORT (0: any free port).",
)
@_aws_options
@metrics_options
@handle_errors
def download_cmd(
    config_file: str | None,
    directory: str | None,
    as_json: bool | None,
    metrics_port: int | None,
    metrics_host: str,
    **flags: Any,
) -> None:
    """Download every selected stream to its own file under DIR; resumable, no gaps, no repeats."""
    flags = {**flags, "dir": directory, "json": as_json}
    options = resolve_options(flags, config_file, os.environ)
    downloader = Downloader(
        options,
        reload=lambda: resolve_options(flags, config_file, os.environ),
        notice=lambda text: err.print(safe_text(text), soft_wrap=True),
    )
    from logferry.cli.common import install_signal_handlers

    install_signal_handlers(downloader.stop)
    signal.signal(signal.SIGHUP, lambda *_: downloader.request_reload())
    t0 = time.monotonic()
    with serving_metrics(metrics_port, metrics_host, None):
        result = downloader.run()
    err.print(
        f"downloaded {result.events:,} events ({human_bytes(result.bytes)}) from "
        f"{result.streams} streams into {safe_text(options.dir)} in {time.monotonic() - t0:.1f} s; "
        f"{len(result.failed)} failed; {downloader.client.stats.throttled} throttled requests retried",
        soft_wrap=True,
    )
    for key, error in result.failed.items():
        err.print(f"  [red]failed[/] {safe_text(key)}: {safe_text(error)}", soft_wrap=True)
    sys.exit(EXIT_FAILED if result.failed else EXIT_OK)


@cloudwatch.command("status")
@click.option(
    "--dir",
    "directory",
    envvar="AWS_LOGS_DIRECTORY",
    required=True,
    help="The download directory [AWS_LOGS_DIRECTORY].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document.")
@handle_errors
def status_cmd(directory: str, as_json: bool) -> None:
    """Show the download daemon (alive?) and each stream's file size, events, last event, lag."""
    from pathlib import Path

    if not (Path(directory) / ".logferry").is_dir():
        raise ConfigError(
            f"{directory} holds no download state: is it the --dir of `cloudwatch download`?"
        )
    status = collect_status(Path(directory))
    if as_json:
        emit_json(status)
        return
    daemon = status["daemon"]
    for running in status["daemons"]:
        click.echo(
            f"daemon: running, pid {running['pid']}, heartbeat {running['heartbeat_age_s']:.0f} s ago, "
            f"{running.get('requests', 0)} requests, {running.get('throttled', 0)} throttled"
            + (f", status port {running['status_port']}" if running.get("status_port") else "")
        )
    if daemon is None:
        click.echo("daemon: never ran here")
    elif not status["alive"]:
        click.echo(f"daemon: not running (last pid {daemon.get('pid')})")
    if status["earlier_state_files"]:
        click.echo(
            f"{status['earlier_state_files']} streams have the state files of an earlier "
            "version: the next download moves them into the ledger"
        )
    out = Console(highlight=False)
    table = Table("group:stream", "file size", "events", "last event (UTC)", "lag", box=None)
    for s in status["streams"]:
        table.add_row(
            safe_text(f"{s['group']}:{s['stream']}"),
            "missing" if s["file_size"] is None else human_bytes(s["file_size"]),
            f"{s['events']:,}",
            format_ms(s["last_event_ms"]),
            "-" if s["lag_s"] is None else f"{s['lag_s']:.0f} s",
        )
    out.print(table)


if __name__ == "__main__":
    from logferry.cli.logs import add_output_options

    add_output_options(cloudwatch)
    cloudwatch(prog_name="logferry cloudwatch")
