"""The ``logferry`` command: a thin layer of subcommands over the library."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from logferry import __version__
from logferry.cli.cloudwatch import cloudwatch
from logferry.cli.common import safe_text
from logferry.cli.demo import demo
from logferry.cli.deploy import deploy
from logferry.cli.errors import drain, errors
from logferry.cli.generate import generate_group
from logferry.cli.job import job
from logferry.cli.package import package
from logferry.cli.pull import pull
from logferry.cli.purge import purge
from logferry.cli.run import run, validate
from logferry.cli.serve import serve, stats
from logferry.cli.ship import ship
from logferry.cli.status import status


class _SafeFormatter(logging.Formatter):
    """Log lines name keys and quote errors: neutralise their control characters."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return safe_text(super().formatMessage(record), markup=False)

    def formatException(self, ei: Any) -> str:
        text = super().formatException(ei)
        return "\n".join(safe_text(line, markup=False) for line in text.split("\n"))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="logferry")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def cli(verbose: int) -> None:
    """Ferry logs from buckets to where people read them: every line once, nothing lost."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(_SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    # botocore's debug logs print request headers; keep them out unless asked explicitly.
    if not os.environ.get("LOGFERRY_DEBUG_BOTO"):
        logging.getLogger("botocore").setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.WARNING)


for command in (
    cloudwatch,
    ship,
    run,
    validate,
    job,
    package,
    pull,
    purge,
    status,
    errors,
    drain,
    demo,
    deploy,
    generate_group,
    serve,
    stats,
):
    cli.add_command(command)


def _limit_malloc_arenas() -> None:
    # glibc gives each thread its own malloc arena; with a decode, a prepare and a send
    # thread per worker, freed batch memory scatters over many arenas and RSS climbs.
    # Two arenas keep the peak bounded at no measurable cost in speed.
    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def main() -> None:
    """Console-script entry point."""
    _limit_malloc_arenas()
    cli(prog_name="logferry")
