"""logferry's own log lines: ``-v`` / ``-q`` and ``--log-format``, before or after a subcommand.

``-v`` tells logferry's story (listed, claimed, shipped, retried, gave up); ``-vv`` adds the
HTTP requests (httpx) and logferry's debug lines; ``-vvv`` everything. ``-q`` keeps errors
only. ``--log-format json`` writes one JSON object per line, for daemons.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import click

from logferry.cli.common import json_text, safe_text
from logferry.engine.processes import Share

_META = "logferry.logging"
_HTTP = ("httpx", "httpcore")
_BOTO = ("botocore", "boto3", "urllib3", "s3transfer")


class SafeFormatter(logging.Formatter):
    """Log lines name keys and quote errors: neutralise their control characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record), markup=False)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join(safe_text(line, markup=False) for line in text.split("\n"))


def _process() -> str | None:
    """``2/3`` in the second of three copies under ``--processes``: whose line it is."""
    share = Share.from_env()
    return f"{share.index + 1}/{share.count}" if share.shared else None


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: ``time`` (UTC), ``level``, ``logger``, ``message``, and
    ``process`` under ``--processes``."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, Any] = {
            "time": f"{moment}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        process = _process()  # read each time: a forked copy learns its share after import
        if process:
            doc["process"] = process
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json_text(doc)


def _settings() -> dict[str, Any]:
    root = click.get_current_context().find_root()
    return root.meta.setdefault(_META, {"verbose": 0, "quiet": False, "format": "text"})


_handler: logging.Handler | None = None


def configure(verbose: int = 0, quiet: bool = False, fmt: str = "text") -> None:
    """Set the handler and the levels of logferry, HTTP and AWS loggers."""
    global _handler
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        process = _process()
        who = f"%(name)s[{process}]" if process else "%(name)s"
        handler.setFormatter(SafeFormatter(f"%(asctime)s %(levelname)s {who}: %(message)s"))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    _handler = handler
    if quiet:
        level = http = logging.ERROR
    else:
        level = [logging.WARNING, logging.INFO][verbose] if verbose < 2 else logging.DEBUG
        http = {2: logging.INFO}.get(verbose, logging.DEBUG if verbose > 2 else logging.WARNING)
    # The root stays at INFO for -vv: other libraries' debug lines only come with -vvv.
    root.setLevel(logging.INFO if verbose == 2 and not quiet else level)
    logging.getLogger("logferry").setLevel(level)
    for name in _HTTP:
        logging.getLogger(name).setLevel(http)
    # botocore's debug logs print request headers; keep them out unless asked explicitly.
    boto = level if os.environ.get("LOGFERRY_DEBUG_BOTO") else max(level, logging.WARNING)
    for name in _BOTO:
        logging.getLogger(name).setLevel(boto)


def _apply() -> None:
    settings = _settings()
    configure(settings["verbose"], settings["quiet"], settings["format"])


def _more_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        _settings()["verbose"] += value
    _apply()


def _quiet(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value:
        _settings()["quiet"] = True
        _apply()
    return value


def _log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        _settings()["format"] = value
        _apply()


def _inherited_quiet() -> bool:
    return bool(_settings()["quiet"])


def add_output_options(command: click.Command) -> None:
    """Give ``command`` and its subcommands ``-v``, ``-q`` and ``--log-format``.

    A command's own ``quiet`` flag keeps working, and a ``-q`` given before the subcommand
    becomes its default.
    """
    names = {opt for p in command.params for opt in getattr(p, "opts", [])}
    if "-v" not in names:
        command.params.append(
            click.Option(
                ["-v", "--verbose"],
                count=True,
                expose_value=False,
                callback=_more_verbose,
                help="Tell what logferry does (-vv: also HTTP requests; -vvv: debug).",
            )
        )
    quiet = next((p for p in command.params if p.name == "quiet"), None)
    if isinstance(quiet, click.Option):
        quiet.callback = _quiet
        quiet.default = _inherited_quiet
        quiet.show_default = False
    elif "-q" not in names:
        command.params.append(
            click.Option(
                ["-q", "--quiet"],
                is_flag=True,
                expose_value=False,
                callback=_quiet,
                help="Only errors.",
            )
        )
    if "--log-format" not in names:
        command.params.append(
            click.Option(
                ["--log-format"],
                type=click.Choice(["text", "json"]),
                default=None,
                expose_value=False,
                callback=_log_format,
                help="Log lines as text or one JSON object per line (daemons).",
            )
        )
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_output_options(sub)
